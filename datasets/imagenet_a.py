"""ImageNet-A (docs/design/datasets.md §7.14): imagenet-a/<wnid>/ for 200 classes, labelled 0..199 in sorted wnid
order,
so the model is evaluated as a 200-way classifier."""
from engine.data.datasets import DATASET_REGISTRY

from .common import TestOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetA(TestOnlyDataset):
    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    prepare_key = "imagenet_a"
    num_classes_expected = 200
