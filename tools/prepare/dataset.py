"""One dataset: its required files (and the raw annotations when the split must be derived), ImageNet's
layout, then a check that every image the split file lists is on disk."""
import os

import datasets  # noqa: F401  (registers the dataset classes, whose folder names are used here)
from engine.data.datasets import DATASET_REGISTRY
from engine.utils.io import read_json
from engine.utils.tools import UserError

from .fetch import fetch_item, item_done
from .imagenet import ManualStep, prepare_imagenet
from .sources import SOURCES


def dataset_class(key):
    for name in DATASET_REGISTRY.registered_names():
        cls = DATASET_REGISTRY.get(name)
        if getattr(cls, "prepare_key", None) == key:
            return cls
    raise KeyError(key)


def check_split(cls, dataset_dir):
    """Every image the split file lists must be on disk (catches mirrors with other file names)."""
    if not getattr(cls, "split_file", None):
        return
    split_path = os.path.join(dataset_dir, cls.split_file)
    image_dir = os.path.join(dataset_dir, cls.image_subdir) if cls.image_subdir else dataset_dir
    try:
        split = read_json(split_path)
        listed = [rel for part in ("train", "val", "test") for rel, _, _ in split[part]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{split_path} is not a split file ({e}); delete it and run again") from e
    missing = [rel for rel in listed if not os.path.isfile(os.path.join(image_dir, rel))]
    if missing:
        raise UserError(f"{len(missing):,} of the {len(listed):,} images listed in {split_path} are missing under "
                        f"{image_dir} (e.g. {missing[0]}); the images do not match the split file")
    print(f"  {cls.split_file}: all {len(listed):,} listed images are present")


def prepare(key, ctx):
    cls = dataset_class(key)
    spec = SOURCES[key]
    dataset_dir = os.path.join(ctx.root, cls.dataset_dir)
    print(f"== {key} -> {dataset_dir}")
    errors = []
    required = [item for item in spec["files"] if not item.get("optional")]
    for item in required:
        if not item_done(item, dataset_dir):
            try:
                fetch_item(item, dataset_dir, ctx)
            except UserError as e:
                errors.append(str(e))
    split_file = getattr(cls, "split_file", None)
    if ctx.with_raw or (split_file and not os.path.isfile(os.path.join(dataset_dir, split_file))):
        # The raw annotations are only needed to derive a split when the authors' file is missing.
        for item in spec["files"]:
            if item.get("optional") and not item_done(item, dataset_dir):
                try:
                    fetch_item(item, dataset_dir, ctx)
                except UserError as e:
                    print(f"  note: {item['name']} (only needed to derive the split) is missing: {e}")
    if key == "imagenet":
        try:
            prepare_imagenet(ctx, dataset_dir)
        except ManualStep as e:
            if errors:
                raise UserError(" | ".join(errors + [str(e)])) from e
            raise
    if errors:
        manual = f" Note: {spec['manual']}." if spec.get("manual") else ""
        raise UserError(" | ".join(errors) + manual)
    check_split(cls, dataset_dir)
    print(f"  {key} is ready")
