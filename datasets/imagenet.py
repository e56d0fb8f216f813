"""ImageNet (docs/design/datasets.md §7.1): images/train/<wnid>/, images/val/<wnid>/ (val sorted into wnid folders) and
classnames.txt. The val set is the test set and doubles as val.

Instead of Dassl's preprocessed.pkl, the folder listing is cached in preprocessed.json, stamped with the
class folders' modification times so that a changed tree is listed again.
"""
import hashlib
import os

from engine.data.datasets import DATASET_REGISTRY, Datum
from engine.utils.io import listdir_nohidden, read_json, write_json
from engine.utils.tools import UserError

from .common import BenchmarkDataset, read_classnames, require, short_list, subfolders

LISTING_FORMAT = "vlprompt-imagenet-listing-1"


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"
    prepare_key = "imagenet"
    val_is_test = True

    read_classnames = staticmethod(read_classnames)  # the variants use it too, as in CoOp

    def load_splits(self):
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        require(text_file, "ImageNet classnames.txt", self.prepare_key, self.root, is_dir=False)
        split_dirs = {"train": os.path.join(self.image_dir, "train"), "test": os.path.join(self.image_dir, "val")}
        for split_dir in split_dirs.values():
            require(split_dir, "ImageNet image folder", self.prepare_key, self.root)

        cache_path = os.path.join(self.dataset_dir, "preprocessed.json")
        stamp = self.tree_stamp(text_file, split_dirs.values())
        listing = None
        if os.path.isfile(cache_path):
            try:
                listing = read_json(cache_path)
            except (ValueError, UnicodeDecodeError):
                listing = None
            if not (isinstance(listing, dict) and listing.get("format") == LISTING_FORMAT
                    and listing.get("stamp") == stamp):
                listing = None
        if listing is None:
            listing = self.list_tree(text_file, split_dirs, stamp)
            try:
                write_json(listing, cache_path)
            except OSError as e:
                print(f"Warning: could not write {cache_path} ({e}); the folders will be listed again next run")

        out = []
        for split, split_dir in split_dirs.items():
            items = []
            for label, (folder, files) in enumerate(listing[split].items()):
                classname = listing["classnames"][label]
                items.extend(Datum(os.path.join(split_dir, folder, f), label, classname=classname, check_file=False)
                             for f in files)
            out.append(items)
        train, test = out
        return train, None, test

    @staticmethod
    def tree_stamp(text_file, split_dirs):
        """Changes when classnames.txt changes or a file is added to / removed from a class folder."""
        h = hashlib.sha256()
        with open(text_file, "rb") as f:
            h.update(f.read())
        for split_dir in split_dirs:
            with os.scandir(split_dir) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    h.update(f"{split_dir}/{entry.name}:{entry.stat().st_mtime_ns}\n".encode())
        return h.hexdigest()

    def list_tree(self, text_file, split_dirs, stamp):
        print(f"Listing the ImageNet folders under {self.image_dir} (kept in preprocessed.json)")
        classnames = read_classnames(text_file)
        train_dir, val_dir = split_dirs["train"], split_dirs["test"]
        folders = subfolders(train_dir)
        missing = [w for w in classnames if w not in folders]
        unknown = [f for f in folders if f not in classnames]
        # Labels are positions in the sorted folder list: a missing folder would shift every later label.
        if missing:
            raise UserError(f"{len(missing)} class folder(s) of classnames.txt missing in {train_dir}: "
                            f"{short_list(missing)}{self.hint}")
        if unknown:
            raise UserError(f"folder(s) {short_list(unknown)} in {train_dir} are not in classnames.txt{self.hint}")
        val_folders = subfolders(val_dir)
        if not val_folders:
            raise UserError(f"the ImageNet validation images in {val_dir} are not sorted into wnid folders "
                            f"(1,000 folders like n01440764 are expected){self.hint}")
        if val_folders != folders:
            diff = sorted(set(folders) ^ set(val_folders))
            raise UserError(f"{val_dir} and {train_dir} hold different class folders ({short_list(diff)}), so "
                            f"their labels would disagree{self.hint}")
        return {
            "format": LISTING_FORMAT,
            "stamp": stamp,
            "classnames": [classnames[f] for f in folders],
            # Files in listing order, as Dassl: with this cache the order (and the few-shot subsets drawn
            # from it) stays fixed across runs and machines that share the folder.
            "train": {f: listdir_nohidden(os.path.join(train_dir, f)) for f in folders},
            "test": {f: listdir_nohidden(os.path.join(val_dir, f)) for f in folders},
        }
