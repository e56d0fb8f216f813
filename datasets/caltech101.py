"""Caltech101 (docs/design/datasets.md §7.2): 101_ObjectCategories/<category>/image_XXXX.jpg."""
from engine.data.datasets import DATASET_REGISTRY

from .common import BenchmarkDataset, read_and_split_data

# Not object categories: a background-clutter set and a second crop of the "Faces" images.
IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(BenchmarkDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    prepare_key = "caltech101"

    def read_raw(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
