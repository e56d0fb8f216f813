"""What the benchmark datasets share (docs/design/datasets.md §2-§6): split files, split derivation, the few-shot
cache, the base/new split, and the checks on the user's files.

A dataset file only says where its files are and how to read its raw annotations.
Random draws use Python's global ``random`` only, in the order of the official CoOp code: the
seed is set by train.py, never here.
"""
import hashlib
import json
import os
import random
from collections import OrderedDict, defaultdict
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from tqdm import tqdm

from engine.data.datasets import DatasetBase, Datum, subsample_classes
from engine.data.datasets.base_dataset import check_enough_shots, check_num_shots
from engine.utils.io import listdir_nohidden, read_json, write_json
from engine.utils.tools import UserError

FEWSHOT_FORMAT = "vlprompt-fewshot-1"
IMAGE_CHECK_FILE = "image_check.json"
IMAGE_CHECK_FORMAT = "vlprompt-image-check-1"
MAX_LISTED = 10  # how many offending paths an error prints


def prepare_command(key, root):
    return f"python tools/prepare_data.py {key} --root {root}"


def resolve_root(cfg, key):
    """Absolute DATASET.ROOT (tilde expanded), which must exist."""
    if not cfg.DATASET.ROOT:
        raise UserError("DATASET.ROOT is empty: pass --root DATA, the folder that holds the dataset folders "
                        f"(prepare one with: {prepare_command(key, 'DATA')})")
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
    if not os.path.isdir(root):
        raise UserError(f"DATASET.ROOT {root} does not exist; prepare the dataset with: {prepare_command(key, root)}")
    return root


def require(path, what, key, root, is_dir=True):
    ok = os.path.isdir(path) if is_dir else os.path.isfile(path)
    if not ok:
        raise UserError(f"{what} not found: expected {path}; prepare it with: {prepare_command(key, root)}")


def short_list(paths):
    shown = ", ".join(paths[:MAX_LISTED])
    return shown + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")


# ----------------------------------------------------------------------------------------------
# Split files: {"train"|"val"|"test": [[path relative to the image folder, label, classname], ...]}

def to_records(items, path_prefix):
    records = []
    for item in items:
        impath = item.impath
        if impath.startswith(path_prefix):
            impath = impath[len(path_prefix):]
        if impath.startswith("/"):
            impath = impath[1:]
        records.append([impath, item.label, item.classname])
    return records


def from_records(records, path_prefix):
    # Existence is checked in bulk by check_files_exist, which reports every missing file at once.
    return [Datum(os.path.join(path_prefix, impath), int(label), classname=classname, check_file=False)
            for impath, label, classname in records]


def _load_json(path, what, hint=""):
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as e:
        # A Google Drive quota or login page saved under the json's name is the usual cause.
        raise UserError(f"{what} {path} is not valid JSON ({e}); delete it and fetch it again{hint}") from e


def read_split(filepath, path_prefix, hint=""):
    """Datum lists of a split file, in file order (that order feeds the few-shot sampler)."""
    print(f"Reading split from {filepath}")
    split = _load_json(filepath, "split file", hint)
    if not isinstance(split, dict) or any(not isinstance(split.get(k), list) for k in ("train", "val", "test")):
        raise UserError(f"split file {filepath} must hold lists 'train', 'val' and 'test'; delete it and fetch "
                        f"it again{hint}")
    try:
        lists = [from_records(split[k], path_prefix) for k in ("train", "val", "test")]
    except (ValueError, TypeError) as e:
        raise UserError(f"split file {filepath} has an entry that is not [path, label, classname] ({e}); delete "
                        f"it and fetch it again{hint}") from e
    check_files_exist(lists, f"split file {filepath}", hint)
    return lists


def save_split(train, val, test, filepath, path_prefix):
    split = {name: to_records(items, path_prefix) for name, items in (("train", train), ("val", val), ("test", test))}
    try:
        write_json(split, filepath)
    except OSError as e:
        print(f"Warning: could not save the split to {filepath} ({e}); it will be derived again next run")
        return
    print(f"Saved split to {filepath}")


def check_files_exist(lists, source, hint=""):
    """Every listed image must exist; a whole missing folder is named as such.

    Labels come from the split file, so nothing is ever relabelled to paper over a missing class:
    the run stops and says what is missing.
    """
    seen, missing = set(), []
    for items in lists:
        for item in items or ():
            if item.impath not in seen:
                seen.add(item.impath)
                if not os.path.isfile(item.impath):
                    missing.append(item.impath)
    if not missing:
        return
    folders = sorted({os.path.dirname(p) for p in missing if not os.path.isdir(os.path.dirname(p))})
    where = f"folder(s) missing on disk: {short_list(folders)}" if folders else f"e.g. {short_list(missing)}"
    raise UserError(f"{len(missing):,} image(s) listed in {source} do not exist; {where}. Labels are fixed by the "
                    f"list, so the dataset must be complete{hint}")


# ----------------------------------------------------------------------------------------------
# Deriving train/val/test when no split file exists (docs/design/datasets.md §4)

def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None):
    """Folder-per-class data: label = rank of the folder name in code-point order; per class the files in
    listing order are shuffled and cut 50/20/30 (Python round)."""
    categories = sorted(c for c in listdir_nohidden(image_dir)
                        if c not in ignored and os.path.isdir(os.path.join(image_dir, c)))
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")

    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        random.shuffle(images)
        n_total = len(images)
        n_train = round(n_total * p_trn)
        n_val = round(n_total * p_val)
        if not (n_train > 0 and n_val > 0 and n_total - n_train - n_val > 0):
            raise UserError(f"class folder {category_dir} has {n_total} image(s), too few to split into "
                            "train/val/test")
        name = new_cnames.get(category, category) if new_cnames else category
        for start, stop, out in ((0, n_train, train), (n_train, n_train + n_val, val), (n_train + n_val, None, test)):
            out.extend(Datum(im, label, classname=name, check_file=False) for im in images[start:stop])
    return train, val, test


def split_trainval(trainval, p_val=0.2):
    """Carve a val set out of an official train(val) list: per label (first-appearance order) shuffle the
    item indices and move the first round(n * p_val) to val."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise UserError(f"class {label} has {len(idxs)} train image(s), too few to carve out a val set")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_classnames(text_file):
    """ImageNet's classnames.txt: ``<wnid> <class name words...>`` -> ordered {wnid: name}."""
    classnames = OrderedDict()
    for line in read_lines(text_file):
        folder, _, name = line.partition(" ")
        classnames[folder] = name
    return classnames


def read_class_folders(image_dir, folders, names, source):
    """Items of folder-per-class test sets: label = position in ``folders``; files in listing order."""
    missing = [f for f in folders if not os.path.isdir(os.path.join(image_dir, f))]
    if missing:
        raise UserError(f"{len(missing)} class folder(s) missing in {image_dir}: {short_list(missing)} ({source})")
    items = []
    for label, (folder, name) in enumerate(zip(folders, names)):
        folder_dir = os.path.join(image_dir, folder)
        items.extend(Datum(os.path.join(folder_dir, im), label, classname=name, check_file=False)
                     for im in listdir_nohidden(folder_dir))
    return items


def subfolders(path):
    """Sorted names of the sub-directories of ``path`` (hidden ones skipped)."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


# ----------------------------------------------------------------------------------------------
# Few-shot cache: plain JSON, paths relative to the image folder, plus a fingerprint of the lists the
# subset was drawn from, so a replaced split file or a changed image list redraws it.

def fingerprint(*record_lists):
    h = hashlib.sha256()
    for records in record_lists:
        h.update(json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def fewshot_with_cache(sampler, sources, cache_path, path_prefix):
    """``sources``: ordered {name: (items, num_shots)}; returns {name: sampled items}.

    The cache holds exactly what the sampler drew; with a valid cache no random number is drawn.
    """
    source_records = {name: to_records(items, path_prefix) for name, (items, _) in sources.items()}
    fp = fingerprint(*source_records.values())
    if os.path.isfile(cache_path):
        try:
            cached = read_json(cache_path)
        except (ValueError, UnicodeDecodeError):
            cached = None
        if (isinstance(cached, dict) and cached.get("format") == FEWSHOT_FORMAT and cached.get("fingerprint") == fp
                and all(isinstance(cached.get(name), list) for name in sources)):
            print(f"Loading preprocessed few-shot data from {cache_path}")
            return {name: from_records(cached[name], path_prefix) for name in sources}
        print(f"Few-shot cache {cache_path} was drawn from a different split or image list (or is damaged); "
              "drawing the subset again")

    sampled = {name: sampler(items, num_shots=k) for name, (items, k) in sources.items()}
    data = {"format": FEWSHOT_FORMAT, "fingerprint": fp}
    data.update({name: to_records(items, path_prefix) for name, items in sampled.items()})
    print(f"Saving preprocessed few-shot data to {cache_path}")
    try:
        write_json(data, cache_path)
    except OSError as e:
        print(f"Warning: could not write {cache_path} ({e}); the subset is not cached")
    return sampled


# ----------------------------------------------------------------------------------------------
# Image check: decode every image a run will use once, at reduced JPEG scale (which still reads all
# the compressed data, so truncated files fail), and remember files that passed by size and mtime.

def _image_problem(path):
    try:
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))
            img.load()
    except Exception as e:  # PIL raises many exception types for bad files
        return f"{type(e).__name__}: {e}"
    return None


def _relative(path, folder):
    # Cheaper than os.path.relpath, which matters for ImageNet's 1.3 M paths.
    prefix = folder.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.abspath(path)


def check_images(dataset_dir, lists, skip_bad):
    """Return ``lists`` (train/val/test, possibly None or the same list twice) without unreadable images.

    By default an unreadable image stops the run, naming the file; with ``skip_bad`` such files are
    dropped and counted.
    """
    cache_path = os.path.join(dataset_dir, IMAGE_CHECK_FILE)
    known = {}
    if os.path.isfile(cache_path):
        try:
            data = read_json(cache_path)
            if isinstance(data, dict) and data.get("format") == IMAGE_CHECK_FORMAT:
                known = data.get("ok", {})
        except (ValueError, UnicodeDecodeError):
            pass

    todo, seen, bad = [], set(), {}
    for items in lists:
        for item in items or ():
            if item.impath in seen:
                continue
            seen.add(item.impath)
            try:
                st = os.stat(item.impath)
            except OSError as e:  # vanished since it was listed
                bad[item.impath] = f"{type(e).__name__}: {e}"
                continue
            key = _relative(item.impath, dataset_dir)
            if known.get(key) != [st.st_size, st.st_mtime_ns]:
                todo.append((item.impath, key, [st.st_size, st.st_mtime_ns]))

    if todo:
        print(f"Checking {len(todo):,} image(s) not checked before (results kept in {cache_path})")
        try:
            with ThreadPoolExecutor(max_workers=min(8, 2 * (os.cpu_count() or 1))) as pool, \
                    tqdm(total=len(todo), desc="checking images", unit=" images", disable=len(todo) < 5000) as bar:
                for start in range(0, len(todo), 1024):  # in chunks: ImageNet's 1.3 M futures would not fit at once
                    chunk = todo[start:start + 1024]
                    for (path, key, stamp), problem in zip(chunk, pool.map(_image_problem, [c[0] for c in chunk])):
                        if problem:
                            bad[path] = problem
                        else:
                            known[key] = stamp
                    bar.update(len(chunk))
        finally:  # also when interrupted: what was checked stays checked
            try:
                write_json({"format": IMAGE_CHECK_FORMAT, "ok": known}, cache_path)
            except OSError:
                pass  # read-only dataset folder: the check simply runs again next time

    if not bad:
        return lists
    for path, problem in list(bad.items())[:MAX_LISTED]:
        print(f"  unreadable image: {path} ({problem})")
    first = next(iter(bad))
    if not skip_bad:
        more = f" and {len(bad) - 1} more (listed above)" if len(bad) > 1 else ""
        raise UserError(f"unreadable image {first} ({bad[first]}){more}; replace or delete the file(s), or set "
                        "DATASET.SKIP_BAD_IMAGES True to skip them")
    print(f"Skipped {len(bad):,} unreadable image(s) (DATASET.SKIP_BAD_IMAGES True)")
    filtered = {}
    out = []
    for items in lists:
        if items is None:
            out.append(None)
        elif id(items) in filtered:  # keep val and test the same object when they were (ImageNet)
            out.append(filtered[id(items)])
        else:
            filtered[id(items)] = [item for item in items if item.impath not in bad]
            out.append(filtered[id(items)])
    return out


# ----------------------------------------------------------------------------------------------

class BenchmarkDataset(DatasetBase):
    """The common construction flow of the CoOp datasets (docs/design/datasets.md §2).

    Subclasses set the class attributes and implement ``read_raw`` (and ``raw_files`` to name what
    ``read_raw`` needs), used only when the split file is absent.
    """

    dataset_dir = ""     # folder under DATASET.ROOT
    image_subdir = ""    # image folder inside it; "" = the dataset folder itself (split paths are relative to it)
    split_file = None    # split_zhou_<Name>.json, or None when the official lists are always used
    prepare_key = ""     # argument of tools/prepare_data.py
    val_is_test = False  # ImageNet: no val split of its own, the test set doubles as val

    # Kept as static methods so code written against CoOp (OxfordPets.read_split, DTD.read_and_split_data,
    # ...) keeps working.
    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    read_and_split_data = staticmethod(read_and_split_data)
    subsample_classes = staticmethod(subsample_classes)

    def __init__(self, cfg):
        self.root = resolve_root(cfg, self.prepare_key)
        self.dataset_dir = os.path.join(self.root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir else self.dataset_dir
        self.split_path = os.path.join(self.dataset_dir, self.split_file) if self.split_file else None
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.hint = f"; prepare it with: {prepare_command(self.prepare_key, self.root)}"
        require(self.dataset_dir, f"{type(self).__name__} folder", self.prepare_key, self.root)
        require(self.image_dir, f"{type(self).__name__} image folder", self.prepare_key, self.root)
        num_shots = cfg.DATASET.NUM_SHOTS
        check_num_shots(num_shots)
        self.cap_shots = cfg.DATASET.CAP_SHOTS
        try:
            os.makedirs(self.split_fewshot_dir, exist_ok=True)
        except OSError as e:
            if num_shots >= 1:
                raise UserError(f"cannot create {self.split_fewshot_dir} ({e}): the dataset folder must be "
                                "writable for the few-shot cache") from e

        train, val, test = self.load_splits()
        if num_shots >= 1:
            train, val = self.fewshot(train, val, num_shots, cfg.SEED)

        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if self.val_is_test:
            train, test = subsample_classes(train, test, subsample=subsample)
            val = test
        else:
            train, val, test = subsample_classes(train, val, test, subsample=subsample)

        train, val, test = check_images(self.dataset_dir, [train, val, test], cfg.DATASET.SKIP_BAD_IMAGES)
        super().__init__(train_x=train, val=val, test=test)

    def raw_files(self):
        """Files ``read_raw`` needs besides the image folder."""
        return []

    def read_raw(self):
        """train, val, test from the raw annotations (docs/design/datasets.md §4)."""
        raise NotImplementedError

    def load_splits(self):
        if self.split_path and os.path.isfile(self.split_path):
            return read_split(self.split_path, self.image_dir, self.hint)
        missing = [p for p in self.raw_files() if not os.path.exists(p)]
        if missing:
            expected = f"{self.split_path} (or the raw annotations {short_list(missing)} to derive it)" \
                if self.split_path else short_list(missing)
            raise UserError(f"{type(self).__name__} split not found: expected {expected}{self.hint}")
        if self.split_path:
            print(f"Note: {self.split_path} not found; deriving a new split from the raw annotations. It will not "
                  "match the CoOp authors' split (see DATASETS.md)")
        train, val, test = self.read_raw()
        check_files_exist([train, val, test], f"the annotations of {type(self).__name__}", self.hint)
        if self.split_path:
            save_split(train, val, test, self.split_path, self.image_dir)
        return train, val, test

    def fewshot(self, train, val, num_shots, seed):
        """Train with K shots then val with min(K, 4), through the cache (docs/design/datasets.md §5)."""
        check_enough_shots(train, num_shots, f"the {type(self).__name__} training split",
                           getattr(self, "cap_shots", False))
        cache_path = os.path.join(self.split_fewshot_dir, f"shot_{num_shots}-seed_{seed}.json")
        sources = OrderedDict(train=(train, num_shots))
        if not self.val_is_test:
            sources["val"] = (val, min(num_shots, 4))
        out = fewshot_with_cache(self.generate_fewshot_dataset, sources, cache_path, self.image_dir)
        return out["train"], out.get("val", val)


class TestOnlyDataset(DatasetBase):
    """ImageNet variants (docs/design/datasets.md §2, §7.12-7.14): one list used as train_x (for the class names) and
    test; NUM_SHOTS and SUBSAMPLE_CLASSES are ignored, as in the official code."""

    dataset_dir = ""
    image_subdir = ""
    prepare_key = ""
    # the default reader: one folder per wnid; all 1,000 must be there, or exactly this many of them
    all_classes = False
    num_classes_expected = None

    read_classnames = staticmethod(read_classnames)

    def __init__(self, cfg):
        root = resolve_root(cfg, self.prepare_key)
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        name = type(self).__name__
        require(self.dataset_dir, f"{name} folder", self.prepare_key, root)
        require(self.image_dir, f"{name} image folder", self.prepare_key, root)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        require(text_file, f"{name} classnames.txt (a copy of ImageNet's)", self.prepare_key, root, is_dir=False)
        self.hint = f"; prepare it with: {prepare_command(self.prepare_key, root)}"
        data = self.read_data(read_classnames(text_file))
        if not data:
            raise UserError(f"{self.image_dir} holds no images{self.hint}")
        data = check_images(self.dataset_dir, [data], cfg.DATASET.SKIP_BAD_IMAGES)[0]
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames):
        folders = self.wnid_folders(classnames, all_classes=self.all_classes,
                                    expected_count=self.num_classes_expected)
        return read_class_folders(self.image_dir, folders, [classnames[f] for f in folders], "wnid folders")

    def wnid_folders(self, classnames, all_classes=False, expected_count=None):
        """Sorted wnid folders of the image folder (files such as README.txt are not classes).

        Labels are positions in this list, so a missing folder would shift every later label: it is an
        error, never silently relabelled.
        """
        folders = subfolders(self.image_dir)
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise UserError(f"folder(s) {short_list(unknown)} in {self.image_dir} are not in classnames.txt; "
                            f"is classnames.txt ImageNet's?{self.hint}")
        missing = [w for w in classnames if w not in folders] if all_classes else []
        if missing:
            raise UserError(f"{len(missing)} class folder(s) missing in {self.image_dir}: {short_list(missing)}"
                            f"{self.hint}")
        if expected_count is not None and len(folders) != expected_count:
            raise UserError(f"{self.image_dir} holds {len(folders)} class folders, expected {expected_count}; "
                            f"the dataset is incomplete{self.hint}")
        return folders
