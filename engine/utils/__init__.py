from .io import (check_isfile, listdir_nohidden, mkdir_if_missing, read_json, write_json,
                 atomic_write, read_image)
from .logger import setup_logger
from .tools import set_random_seed, collect_env_info, AverageMeter, MetricMeter, UserError

__all__ = [
    "check_isfile", "listdir_nohidden", "mkdir_if_missing", "read_json", "write_json", "atomic_write",
    "read_image", "setup_logger", "set_random_seed", "collect_env_info", "AverageMeter", "MetricMeter",
    "UserError", "load_checkpoint", "load_pretrained_weights", "save_checkpoint",
]


def __getattr__(name):
    # Dassl exposes the checkpoint helpers here; import lazily (engine.checkpoint imports engine.utils)
    if name in ("load_checkpoint", "load_pretrained_weights", "save_checkpoint"):
        from .. import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(name)
