"""FGVC Aircraft (docs/design/datasets.md §7.7): the `data/` folder of fgvc-aircraft-2013b; official train/val/test
lists,
no split file."""
import os

from engine.data.datasets import DATASET_REGISTRY, Datum
from engine.utils.tools import UserError

from .common import BenchmarkDataset, read_lines

SPLITS = ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_file = None
    prepare_key = "fgvc_aircraft"

    def raw_files(self):
        return [os.path.join(self.dataset_dir, f) for f in ("variants.txt",) + SPLITS]

    def read_raw(self):
        variants_file, *split_files = self.raw_files()
        cname2lab = {c: i for i, c in enumerate(read_lines(variants_file))}
        return [self.read_data(cname2lab, f) for f in split_files]

    def read_data(self, cname2lab, split_file):
        items = []
        for line in read_lines(split_file):
            image_id, _, variant = line.partition(" ")  # variant names contain spaces, "/" and "-"
            if variant not in cname2lab:
                raise UserError(f"{split_file}: variant {variant!r} is not in variants.txt")
            items.append(Datum(os.path.join(self.image_dir, image_id + ".jpg"), cname2lab[variant],
                               classname=variant, check_file=False))
        return items
