"""EuroSAT RGB (docs/design/datasets.md §7.10): 2750/<ClassName>/<ClassName>_<n>.jpg."""
from engine.data.datasets import DATASET_REGISTRY

from .common import BenchmarkDataset, read_and_split_data

# Descriptive names for the prompts ("a centered satellite photo of Highway or Road").
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(BenchmarkDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    prepare_key = "eurosat"

    def read_raw(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
