"""Prompt bundles (issue 18): one small file with what a trained run learned and what is needed to use it
elsewhere: the learned tensors per registered model (no CLIP weights, no tensors rebuilt from the class
names), the resolved config, the trainer and backbone names, the SHA-256 of the CLIP weights file it was
trained on, the class names and the epoch. Written by tools/export.py, read by ``load_model`` (train.py
--eval-only --model-dir BUNDLE) and predict.py, always with the allow-list unpickler (nothing in the file
is executed)."""
import os

import torch

from .checkpoint import load_checkpoint
from .utils.io import atomic_write
from .utils.tools import UserError

BUNDLE_FORMAT = "vlprompt-prompt-bundle"
BUNDLE_VERSION = 1
BUNDLE_KEYS = ("trainer", "backbone", "clip_sha256", "config", "classnames", "epoch", "state_dicts")


def write_bundle(path, **fields):
    missing = [k for k in BUNDLE_KEYS if k not in fields]
    if missing:
        raise ValueError(f"a bundle needs {', '.join(missing)}")
    with atomic_write(path, "wb") as f:
        torch.save({"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, **fields}, f)
    return path


def read_bundle(path):
    """The bundle's dict; a file that is not a bundle is refused in one line."""
    data = load_checkpoint(path, map_location="cpu")
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        raise UserError(f"{path} is not a prompt bundle (tools/export.py writes them); for a training run pass its "
                        "output folder instead")
    if data.get("version", 0) > BUNDLE_VERSION:
        raise UserError(f"{path} is a bundle of format version {data['version']}; this vlprompt reads version "
                        f"{BUNDLE_VERSION} and older (update vlprompt)")
    missing = [k for k in BUNDLE_KEYS if k not in data]
    if missing:
        raise UserError(f"the bundle {path} lacks {', '.join(missing)} (truncated or edited?); export it again")
    return data


def is_bundle_file(path):
    """A ``--model-dir`` that names a file is a bundle (a training run is a folder)."""
    return bool(path) and os.path.isfile(path)
