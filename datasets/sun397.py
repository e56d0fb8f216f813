"""SUN397 (docs/design/datasets.md §7.8): SUN397/<letter>/<class>[/<sub>]/sun_*.jpg with the partition text files
(ClassName.txt, Training_01.txt, Testing_01.txt) in the dataset folder."""
import os

from engine.data.datasets import DATASET_REGISTRY, Datum

from .common import BenchmarkDataset, read_lines, split_trainval


@DATASET_REGISTRY.register()
class SUN397(BenchmarkDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    prepare_key = "sun397"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, f) for f in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")]

    def read_raw(self):
        classname_file, train_file, test_file = self.raw_files()
        cname2lab = {c[1:]: i for i, c in enumerate(read_lines(classname_file))}  # "/a/abbey" -> "a/abbey"
        train, val = split_trainval(self.read_data(cname2lab, train_file))
        return train, val, self.read_data(cname2lab, test_file)

    def read_data(self, cname2lab, text_file):
        items = []
        for line in read_lines(text_file):
            imname = line[1:]  # drop the leading "/"
            class_path = os.path.dirname(imname)
            # "a/apartment_building/outdoor" -> "outdoor apartment_building": drop the letter, qualifier first
            classname = " ".join(class_path.split("/")[1:][::-1])
            items.append(Datum(os.path.join(self.image_dir, imname), cname2lab[class_path], classname=classname,
                               check_file=False))
        return items
