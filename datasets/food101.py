"""Food-101 (docs/design/datasets.md §7.6): images/<class>/<id>.jpg; CoOp's 50/20/30 split, not the official one."""
from engine.data.datasets import DATASET_REGISTRY

from .common import BenchmarkDataset, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(BenchmarkDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    prepare_key = "food101"

    def read_raw(self):
        return read_and_split_data(self.image_dir)
