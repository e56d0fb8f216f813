from .lr_scheduler import build_lr_scheduler
from .optimizer import build_optimizer

__all__ = ["build_optimizer", "build_lr_scheduler"]
