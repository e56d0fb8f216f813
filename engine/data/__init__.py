from .data_manager import DataManager, DatasetWrapper, build_data_loader
from .transforms import build_transform

__all__ = ["DataManager", "DatasetWrapper", "build_data_loader", "build_transform"]
