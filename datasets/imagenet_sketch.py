"""ImageNet-Sketch (datasets.md §7.13): images/<wnid>/ for the 1,000 ImageNet classes."""
from engine.data.datasets import DATASET_REGISTRY

from .common import TestOnlyDataset, read_class_folders


@DATASET_REGISTRY.register()
class ImageNetSketch(TestOnlyDataset):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    prepare_key = "imagenet_sketch"

    def read_data(self, classnames):
        folders = self.wnid_folders(classnames, all_classes=True)
        return read_class_folders(self.image_dir, folders, [classnames[f] for f in folders], "wnid folders")
