"""UCF101 middle frames (docs/design/datasets.md §7.11): UCF-101-midframes/<Action_Name>/<video name>.jpg; deriving the
split needs ucfTrainTestlist/ from the official UCF101 split archive."""
import os
import re

from engine.data.datasets import DATASET_REGISTRY, Datum

from .common import BenchmarkDataset, read_lines, split_trainval


@DATASET_REGISTRY.register()
class UCF101(BenchmarkDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    prepare_key = "ucf101"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, "ucfTrainTestlist", f)
                for f in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]

    def read_raw(self):
        class_file, train_file, test_file = self.raw_files()
        cname2lab = {}
        for line in read_lines(class_file):
            label, action = line.split(" ")
            cname2lab[action] = int(label) - 1
        train, val = split_trainval(self.read_data(cname2lab, train_file))
        return train, val, self.read_data(cname2lab, test_file)

    def read_data(self, cname2lab, text_file):
        items = []
        for line in read_lines(text_file):
            action, filename = line.split(" ")[0].split("/")  # trainlist lines also carry the label
            renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))  # "ApplyEyeMakeup" -> "Apply_Eye_Makeup"
            impath = os.path.join(self.image_dir, renamed, filename.replace(".avi", ".jpg"))
            items.append(Datum(impath, cname2lab[action], classname=renamed, check_file=False))
        return items
