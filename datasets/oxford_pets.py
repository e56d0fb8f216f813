"""Oxford-IIIT Pets (docs/design/datasets.md §7.3): images/<Breed_name>_<n>.jpg, annotations/{trainval,test}.txt."""
import os

from engine.data.datasets import DATASET_REGISTRY, Datum

from .common import BenchmarkDataset, read_lines, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(BenchmarkDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    prepare_key = "oxford_pets"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, "annotations", f) for f in ("trainval.txt", "test.txt")]

    def read_raw(self):
        trainval_file, test_file = self.raw_files()
        train, val = split_trainval(self.read_data(trainval_file))
        return train, val, self.read_data(test_file)

    def read_data(self, split_file):
        items = []
        for line in read_lines(split_file):
            imname, class_id, _species, _breed_id = line.split(" ")
            breed = "_".join(imname.split("_")[:-1]).lower()  # "Abyssinian_100" -> "abyssinian"
            items.append(Datum(os.path.join(self.image_dir, imname + ".jpg"), int(class_id) - 1, classname=breed,
                               check_file=False))
        return items
