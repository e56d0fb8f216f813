from ...registry import Registry
from ...utils.tools import UserError
from .base_dataset import Datum, DatasetBase, subsample_classes

DATASET_REGISTRY = Registry("dataset")


def build_dataset(cfg):
    name = cfg.DATASET.NAME
    if not name:
        raise UserError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml")
    cls = DATASET_REGISTRY.get(name)
    if cfg.VERBOSE:
        print(f"Loading dataset: {name}")
    return cls(cfg)


__all__ = ["DATASET_REGISTRY", "Datum", "DatasetBase", "build_dataset", "subsample_classes"]
