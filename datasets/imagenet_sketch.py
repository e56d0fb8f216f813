"""ImageNet-Sketch (docs/design/datasets.md §7.13): images/<wnid>/ for the 1,000 ImageNet classes."""
from engine.data.datasets import DATASET_REGISTRY

from .common import TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(TestOnlyDataset):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    prepare_key = "imagenet_sketch"
    all_classes = True
