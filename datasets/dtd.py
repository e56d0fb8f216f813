"""Describable Textures (docs/design/datasets.md §7.9): images/<category>/...; CoOp's 50/20/30 split, not the ten
official DTD splits."""
from engine.data.datasets import DATASET_REGISTRY

from .common import BenchmarkDataset, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(BenchmarkDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    prepare_key = "dtd"

    def read_raw(self):
        return read_and_split_data(self.image_dir)
