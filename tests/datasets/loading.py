"""Build a dataset the way train.py does."""
import os
import random

from engine.config import get_cfg_default
from engine.data.datasets import build_dataset


def make_cfg(root, name, shots=-1, subsample="all", seed=1, skip_bad=False):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.SKIP_BAD_IMAGES = skip_bad
    cfg.SEED = seed
    return cfg


def load(root, name, **kwargs):
    """train.py seeds Python's random with SEED (when >= 0) before the dataset is built."""
    cfg = make_cfg(root, name, **kwargs)
    if cfg.SEED >= 0:
        random.seed(cfg.SEED)
    return build_dataset(cfg)


def records(items, prefix):
    """[relative path, label, classname] rows, as in a split file."""
    return [[os.path.relpath(item.impath, prefix), item.label, item.classname] for item in items]
