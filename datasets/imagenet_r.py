"""ImageNet-R (docs/design/datasets.md §7.14): imagenet-r/<wnid>/ for 200 classes, labelled 0..199 in sorted wnid
order,
so the model is evaluated as a 200-way classifier."""
from engine.data.datasets import DATASET_REGISTRY

from .common import TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetR(TestOnlyDataset):
    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    prepare_key = "imagenet_r"
    num_classes_expected = 200
