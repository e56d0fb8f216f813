"""Stanford Cars (docs/design/datasets.md §7.4): cars_train/, cars_test/, devkit/*.mat; split paths are relative to
the dataset folder itself (cars_train/00001.jpg)."""
import os

from scipy.io import loadmat

from engine.data.datasets import DATASET_REGISTRY, Datum

from .common import BenchmarkDataset, split_trainval


@DATASET_REGISTRY.register()
class StanfordCars(BenchmarkDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    prepare_key = "stanford_cars"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"),
                os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"),
                os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")]

    def read_raw(self):
        train_annos, test_annos, meta = self.raw_files()
        train, val = split_trainval(self.read_data("cars_train", train_annos, meta))
        return train, val, self.read_data("cars_test", test_annos, meta)

    def read_data(self, image_folder, anno_file, meta_file):
        annotations = loadmat(anno_file)["annotations"][0]
        class_names = loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annotations:
            label = int(anno["class"][0, 0]) - 1
            words = class_names[label][0].split(" ")
            classname = " ".join([words[-1]] + words[:-1])  # year first: "2000 AM General Hummer SUV"
            items.append(Datum(os.path.join(self.dataset_dir, image_folder, anno["fname"][0]), label,
                               classname=classname, check_file=False))
        return items
