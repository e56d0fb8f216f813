"""Oxford Flowers102 (docs/design/datasets.md §7.5): jpg/image_00001.jpg..., imagelabels.mat, cat_to_name.json."""
import os
import random
from collections import defaultdict

from scipy.io import loadmat

from engine.data.datasets import DATASET_REGISTRY, Datum
from engine.utils.io import read_json
from engine.utils.tools import UserError

from .common import BenchmarkDataset


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    prepare_key = "oxford_flowers"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, "imagelabels.mat"), os.path.join(self.dataset_dir, "cat_to_name.json")]

    def read_raw(self):
        label_file, lab2cname_file = self.raw_files()
        tracker = defaultdict(list)  # 1-based label -> image paths, labels in first-appearance order
        for i, label in enumerate(loadmat(label_file)["labels"][0]):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        lab2cname = read_json(lab2cname_file)

        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in tracker.items():
            random.shuffle(impaths)
            n_train = round(len(impaths) * 0.5)
            n_val = round(len(impaths) * 0.2)
            if not (n_train > 0 and n_val > 0 and len(impaths) - n_train - n_val > 0):
                raise UserError(f"flower class {label} has {len(impaths)} image(s), too few to split")
            cname = lab2cname[str(label)]
            for start, stop, out in ((0, n_train, train), (n_train, n_train + n_val, val),
                                     (n_train + n_val, None, test)):
                out.extend(Datum(p, label - 1, classname=cname, check_file=False) for p in impaths[start:stop])
        return train, val, test
