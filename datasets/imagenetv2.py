"""ImageNetV2 matched-frequency (docs/design/datasets.md §7.12): folders 0..999, folder i = i-th class of
classnames.txt."""
from engine.data.datasets import DATASET_REGISTRY

from .common import TestOnlyDataset, read_class_folders


@DATASET_REGISTRY.register()
class ImageNetV2(TestOnlyDataset):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    prepare_key = "imagenetv2"

    def read_data(self, classnames):
        folders = [str(label) for label in range(len(classnames))]
        return read_class_folders(self.image_dir, folders, list(classnames.values()), "folder i is class i")
