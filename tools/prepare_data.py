#!/usr/bin/env python
"""Download the benchmark datasets and lay them out as the dataset readers expect (DATASETS.md).

    python tools/prepare_data.py caltech101 --root DATA
    python tools/prepare_data.py all --root DATA

Archives go to DATA/downloads/ (resumable, checked against the MD5 their host publishes when known),
are extracted to a scratch folder and moved into place; the split files come from the CoOp authors'
Google Drive through gdown. Running it again is harmless: what is in place is not fetched again.
A file that cannot be fetched can be put by hand where the message says, or served from a mirror
(--mirror, see DATASETS.md). ImageNet needs a login: the command says what to download and where,
then finishes the layout.
"""
import argparse
import fnmatch
import io
import os
import re
import shutil
import sys
import tarfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tqdm import tqdm  # noqa: E402

import datasets  # noqa: E402,F401  (registers the dataset classes, whose folder names are used here)
from engine.data.datasets import DATASET_REGISTRY  # noqa: E402
from engine.utils import download  # noqa: E402  (module access, so tests can replace download._open_url)
from engine.utils.io import read_json  # noqa: E402
from engine.utils.tools import UserError  # noqa: E402

DRIVE_VIEW = "https://drive.google.com/file/d/{}/view"
IMAGENET_CLASSNAMES = "gdrive:1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"
# ImageNet-variant folders need a copy of ImageNet's classnames.txt: take it from DATA/imagenet if there.
CLASSNAMES_ITEM = {"name": "classnames.txt",
                   "sources": [("copy:imagenet/classnames.txt", None), (IMAGENET_CLASSNAMES, None)]}


def split_item(name, drive_id):
    return {"name": name, "sources": [("gdrive:" + drive_id, None)]}


# Per dataset (key = the yaml name), the files to fetch, in order. A file lists its sources in order of
# preference: a URL, "gdrive:<id>" or "copy:<path under DATA>", each with the MD5 the host publishes
# (None when unknown). An archive says what to take from it: [(name patterns, destination in the
# dataset folder)]; destination "." merges a folder's content into the dataset folder, a trailing "/"
# puts the matches inside that folder. "creates" names what marks an archive as done when the
# destinations alone do not. "optional" files (raw annotations) are needed only to derive a split, so
# they are fetched only with --with-raw or when the split file cannot be had.
SOURCES = {
    "imagenet": {
        "files": [{"name": "classnames.txt", "sources": [(IMAGENET_CLASSNAMES, None)]}],  # images: prepare_imagenet
    },
    "caltech101": {
        "files": [
            {"name": "caltech-101.zip",  # holds 101_ObjectCategories.tar.gz, extracted in turn
             "sources": [("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                          "3138e1922a9193bfa496528edbbc45d0")],
             "take": [("101_ObjectCategories", "101_ObjectCategories")]},
            split_item("split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
        ],
    },
    "oxford_pets": {
        "files": [
            {"name": "images.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                          "5c4f3ee8e5d25df40f4fd59a7f44e54c")],
             "take": [("images", "images")]},
            {"name": "annotations.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",
                          "95a8c909bbe2e81eed6a22bccdf3f68f")],
             "take": [("annotations", "annotations")], "optional": True},
            split_item("split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
        ],
    },
    "stanford_cars": {
        "manual": ("the Stanford hosts have been offline since 2023: get cars_train.tgz, cars_test.tgz, car_devkit.tgz "
                   "and cars_test_annos_withlabels.mat from a copy (see DATASETS.md, Stanford Cars)"),
        "files": [
            {"name": "cars_train.tgz", "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz", None)],
             "take": [("cars_train", "cars_train")]},
            {"name": "cars_test.tgz", "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_test.tgz", None)],
             "take": [("cars_test", "cars_test")]},
            {"name": "car_devkit.tgz", "sources": [("https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", None)],
             "take": [("devkit", "devkit")], "optional": True},
            {"name": "cars_test_annos_withlabels.mat",
             "sources": [("http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat", None)],
             "optional": True},
            split_item("split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
        ],
    },
    "oxford_flowers": {
        "files": [
            {"name": "102flowers.tgz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                          "52808999861908f626f3c1f4e79d11fa")],
             "take": [("jpg", "jpg")]},
            {"name": "imagelabels.mat",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                          "e0620be6f572b9609742df49c70aed4d")]},
            {"name": "cat_to_name.json", "sources": [("gdrive:1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0", None)]},
            split_item("split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ],
    },
    "food101": {
        "files": [
            {"name": "food-101.tar.gz",
             "sources": [("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz", "85eeb15f3717b99a5da872d97d918f87")],
             "take": [("food-101", ".")], "creates": ["images"]},
            split_item("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ],
    },
    "fgvc_aircraft": {
        "files": [
            {"name": "fgvc-aircraft-2013b.tar.gz",  # only its data/ folder is kept, as the dataset folder
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                          None)],
             "take": [("data", ".")],
             "creates": ["images", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                         "images_variant_test.txt"]},
        ],
    },
    "sun397": {
        "files": [
            {"name": "SUN397.tar.gz",
             "sources": [("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                          "8ca2778205c41d23104230ba66911c7a")],
             "take": [("SUN397", "SUN397")]},
            {"name": "Partitions.zip",
             "sources": [("https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip", None)],
             "take": [(("ClassName.txt", "Training_*.txt", "Testing_*.txt"), "./")],
             "creates": ["ClassName.txt", "Training_01.txt", "Testing_01.txt"], "optional": True},
            split_item("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
        ],
    },
    "dtd": {
        "files": [
            {"name": "dtd-r1.0.1.tar.gz",
             "sources": [("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
                          "fff73e5086ae6bdbea199a49dfb8a4c1")],
             "take": [("dtd", ".")], "creates": ["images"]},
            split_item("split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ],
    },
    "eurosat": {
        "files": [
            {"name": "EuroSAT.zip",  # the Zenodo copy unpacks to EuroSAT_RGB/ instead of 2750/
             "sources": [("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                          "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip", "c8fa014336c82ac7804f0398fcb19387"),
                         ("http://madm.dfki.de/files/sentinel/EuroSAT.zip", None),
                         ("https://zenodo.org/records/7711810/files/EuroSAT_RGB.zip", None)],
             "take": [(("2750", "EuroSAT_RGB"), "2750")]},
            split_item("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
        ],
    },
    "ucf101": {
        "files": [
            {"name": "UCF-101-midframes.zip", "sources": [("gdrive:10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O", None)],
             "take": [("UCF-101-midframes", "UCF-101-midframes")]},
            {"name": "UCF101TrainTestSplits-RecognitionTask.zip",
             "sources": [("https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip", None)],
             "take": [("ucfTrainTestlist", "ucfTrainTestlist")], "optional": True},
            split_item("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
        ],
    },
    "imagenetv2": {
        "files": [
            {"name": "imagenetv2-matched-frequency.tar.gz",
             "sources": [("https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/"
                          "imagenetv2-matched-frequency.tar.gz", None),
                         ("https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                          None)],
             "take": [("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency-format-val")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_sketch": {
        "files": [
            {"name": "ImageNet-Sketch.zip", "sources": [("gdrive:1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA", None)],
             "take": [(("sketch", "images"), "images")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_a": {
        "files": [
            {"name": "imagenet-a.tar",
             "sources": [("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                          "c3e55429088dc681f30d81f4726b6595")],
             "take": [("imagenet-a", "imagenet-a")]},
            CLASSNAMES_ITEM,
        ],
    },
    "imagenet_r": {
        "files": [
            {"name": "imagenet-r.tar",
             "sources": [("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                          "a61312130a589d0ca1a8fca1f2bd3337")],
             "take": [("imagenet-r", "imagenet-r")]},
            CLASSNAMES_ITEM,
        ],
    },
}

IMAGENET_ARCHIVES = [  # name, approximate size, MD5 (as published with torchvision)
    ("ILSVRC2012_img_train.tar", "138 GB", "1d675b47d978889d74fa0da5fadfb00e"),
    ("ILSVRC2012_img_val.tar", "6.3 GB", "29b22e2961454d5413ddabcf34fc5622"),
    ("ILSVRC2012_devkit_t12.tar.gz", "2.5 MB", "fa75699e90414af021442c21a62c3abf"),
]
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class ManualStep(UserError):
    """The user must download something by hand (ImageNet); not a failure of the tool."""


def dataset_class(key):
    for name in DATASET_REGISTRY.registered_names():
        cls = DATASET_REGISTRY.get(name)
        if getattr(cls, "prepare_key", None) == key:
            return cls
    raise KeyError(key)


def gdrive_download(file_id, dst):
    """Fetch a Google Drive file with gdown (resumable). Tests replace this function."""
    import gdown

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        gdown.download(id=file_id, output=dst, quiet=False, resume=True)
    except Exception as e:  # gdown raises its own types for quota pages, permissions, network errors
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"Google Drive file {file_id}: {first_line}") from e
    if not os.path.isfile(dst):
        raise UserError(f"Google Drive file {file_id} was not downloaded")


# ----------------------------------------------------------------------------------------------
# Fetching one file

class Context:
    def __init__(self, root, download_dir=None, mirror=None, keep_archives=False, val_labels=None, with_raw=False):
        self.with_raw = with_raw
        self.root = os.path.abspath(os.path.expanduser(root))
        self.download_dir = os.path.abspath(os.path.expanduser(download_dir or os.path.join(self.root, "downloads")))
        self.scratch = os.path.join(self.root, ".prepare-tmp")
        self.mirror = mirror
        self.keep_archives = keep_archives
        self.val_labels = val_labels


def _looks_like_web_page(path):
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _valid_download(path, name):
    """Reject what Google Drive and others send instead of the file (quota or login pages)."""
    if _looks_like_web_page(path):
        os.remove(path)
        raise UserError("got a web page instead of the file (Google Drive quota exceeded or login required?)")
    if name.endswith(".json"):
        try:
            read_json(path)
        except (ValueError, UnicodeDecodeError) as e:
            os.remove(path)
            raise UserError(f"the downloaded file is not valid JSON ({e})") from e


def _copy_local(src, dst):
    if not os.path.isfile(src):
        raise UserError(f"{src} does not exist")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst + ".part")
    os.replace(dst + ".part", dst)


def _md5_ok(path, md5):
    return download.file_digest(path, "md5") == md5


def _usable(path, item):
    """Whether a file already at ``path`` (fetched before, or put there by hand) can be kept."""
    try:
        _valid_download(path, item["name"])  # deletes a web page or broken JSON
    except UserError:
        return False
    md5s = [md5 for _, md5 in item["sources"]]
    # Only when every source publishes an MD5 can a file from elsewhere be told apart.
    if md5s and None not in md5s and not any(_md5_ok(path, md5) for md5 in md5s):
        print(f"  {path} does not match the published MD5; fetching it again")
        return False
    return True


def fetch_file(item, dst, ctx):
    """Put ``item`` at ``dst`` from its first working source, then the mirror; raise with what to do by hand."""
    if os.path.isfile(dst) and _usable(dst, item):
        return dst
    sources = list(item["sources"])
    if ctx.mirror:
        sources.append((ctx.mirror.rstrip("/") + "/" + item["name"], None))
    errors = []
    for location, md5 in sources:
        try:
            if location.startswith("gdrive:"):
                if os.path.exists(dst):
                    os.remove(dst)  # gdown would keep a file that is already there
                gdrive_download(location[len("gdrive:"):], dst)
                if md5 and not _md5_ok(dst, md5):
                    os.remove(dst)
                    raise UserError("failed its MD5 check and was deleted")
            elif location.startswith("copy:"):
                _copy_local(os.path.join(ctx.root, location[len("copy:"):]), dst)
            elif re.match(r"^[a-z]+://", location):
                download.download_url(location, dst, md5=md5, desc=item["name"])
            else:  # a mirror that is a local folder
                _copy_local(location, dst)
            _valid_download(dst, item["name"])
            return dst
        except (UserError, OSError) as e:
            errors.append(f"{location}: {e}")
            print(f"  could not fetch {item['name']} from {location}: {e}")
    by_hand = [DRIVE_VIEW.format(loc[len("gdrive:"):]) if loc.startswith("gdrive:") else loc
               for loc, _ in item["sources"] if not loc.startswith("copy:")]
    raise UserError(f"could not fetch {item['name']} ({len(errors)} source(s) failed). Download it by hand from "
                    f"{' or '.join(by_hand)} and put it at {dst}, then run the command again")


# ----------------------------------------------------------------------------------------------
# Archives

def extract(archive, dst):
    """Extract a tar(.gz) or zip archive into ``dst``, refusing members that would land outside it."""
    os.makedirs(dst, exist_ok=True)
    name = os.path.basename(archive)
    with tqdm(desc=f"extracting {name}", unit=" files") as bar:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:  # ZipFile.extract strips "..", absolute paths
                for member in zf.infolist():
                    zf.extract(member, dst)
                    bar.update()
        else:
            try:
                with tarfile.open(archive, "r:*") as tf:
                    for member in tf:
                        tf.extract(member, dst, filter="data")
                        bar.update()
            except tarfile.TarError as e:
                raise UserError(f"{archive} is not a readable archive ({e}); delete it and run again") from e


def _skip(name):
    return name.startswith(".") or name == "__MACOSX"


def find_matches(top, patterns, max_depth=5):
    """Paths whose name matches one of ``patterns``, at the shallowest depth where any matches."""
    level = [top]
    for _ in range(max_depth):
        found, deeper = [], []
        for folder in level:
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if _skip(entry.name):
                    continue
                if any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
                    found.append(_unnest(entry.path))
                elif entry.is_dir():
                    deeper.append(entry.path)
        if found:
            return found
        level = deeper
    return []


def _unnest(path):
    # Some re-uploads wrap a folder in a folder of the same name (cars_train/cars_train/...).
    while os.path.isdir(path):
        entries = [e for e in os.listdir(path) if not _skip(e)]
        if len(entries) == 1 and entries[0] == os.path.basename(path) and os.path.isdir(os.path.join(path, entries[0])):
            path = os.path.join(path, entries[0])
        else:
            break
    return path


def merge_move(src, dst):
    """Move ``src`` to ``dst``; folders are merged so that a run interrupted half-way can be repeated."""
    if os.path.isdir(src) and os.path.isdir(dst) and not os.path.islink(dst):
        for name in os.listdir(src):
            merge_move(os.path.join(src, name), os.path.join(dst, name))
        os.rmdir(src)
        return
    if os.path.isdir(dst) and not os.path.islink(dst):
        shutil.rmtree(dst)
    elif os.path.lexists(dst):
        os.remove(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.move(src, dst)


def take_from(staging, take, dataset_dir, archive_name):
    nested_done = False
    for patterns, dest in take:
        patterns = (patterns,) if isinstance(patterns, str) else patterns
        matches = find_matches(staging, patterns)
        if not matches and not nested_done:
            # e.g. caltech-101.zip holds 101_ObjectCategories.tar.gz
            for inner in find_matches(staging, ["*" + suffix for suffix in ARCHIVE_SUFFIXES]):
                extract(inner, inner + ".d")
                os.remove(inner)
            nested_done = True
            matches = find_matches(staging, patterns)
        if not matches:
            raise UserError(f"{archive_name} holds nothing named {' or '.join(patterns)}; the host may have changed "
                            "the archive (see DATASETS.md)")
        if dest == ".":
            for match in matches:
                merge_move(match, dataset_dir if os.path.isdir(match)
                           else os.path.join(dataset_dir, os.path.basename(match)))
        elif dest.endswith("/"):
            for match in matches:
                merge_move(match, os.path.join(dataset_dir, dest, os.path.basename(match)))
        else:
            merge_move(matches[0], os.path.join(dataset_dir, dest))


def outputs(item):
    """Paths (relative to the dataset folder) whose presence means ``item`` is in place."""
    if "creates" in item:
        return item["creates"]
    if "take" in item:
        return [dest for _, dest in item["take"]]
    return [item["name"]]


def item_done(item, dataset_dir):
    for rel in outputs(item):
        path = os.path.join(dataset_dir, rel)
        if not os.path.exists(path):
            return False
        if rel.endswith(".json"):
            try:
                read_json(path)
            except (ValueError, UnicodeDecodeError):
                return False
    return True


def fetch_item(item, dataset_dir, ctx):
    if "take" not in item:
        fetch_file(item, os.path.join(dataset_dir, item["name"]), ctx)
        return
    archive = fetch_file(item, os.path.join(ctx.download_dir, item["name"]), ctx)
    staging = os.path.join(ctx.scratch, item["name"])
    shutil.rmtree(staging, ignore_errors=True)  # left over by an interrupted run
    extract(archive, staging)
    take_from(staging, item["take"], dataset_dir, item["name"])
    shutil.rmtree(staging, ignore_errors=True)
    if not ctx.keep_archives:
        os.remove(archive)


# ----------------------------------------------------------------------------------------------
# One dataset

def check_split(cls, dataset_dir):
    """Every image the split file lists must be on disk (catches mirrors with other file names)."""
    if not getattr(cls, "split_file", None):
        return
    split_path = os.path.join(dataset_dir, cls.split_file)
    image_dir = os.path.join(dataset_dir, cls.image_subdir) if cls.image_subdir else dataset_dir
    try:
        split = read_json(split_path)
        listed = [rel for part in ("train", "val", "test") for rel, _, _ in split[part]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{split_path} is not a split file ({e}); delete it and run again") from e
    missing = [rel for rel in listed if not os.path.isfile(os.path.join(image_dir, rel))]
    if missing:
        raise UserError(f"{len(missing):,} of the {len(listed):,} images listed in {split_path} are missing under "
                        f"{image_dir} (e.g. {missing[0]}); the images do not match the split file")
    print(f"  {cls.split_file}: all {len(listed):,} listed images are present")


def prepare(key, ctx):
    cls = dataset_class(key)
    spec = SOURCES[key]
    dataset_dir = os.path.join(ctx.root, cls.dataset_dir)
    print(f"== {key} -> {dataset_dir}")
    errors = []
    required = [item for item in spec["files"] if not item.get("optional")]
    for item in required:
        if not item_done(item, dataset_dir):
            try:
                fetch_item(item, dataset_dir, ctx)
            except UserError as e:
                errors.append(str(e))
    split_file = getattr(cls, "split_file", None)
    if ctx.with_raw or (split_file and not os.path.isfile(os.path.join(dataset_dir, split_file))):
        # The raw annotations are only needed to derive a split when the authors' file is missing.
        for item in spec["files"]:
            if item.get("optional") and not item_done(item, dataset_dir):
                try:
                    fetch_item(item, dataset_dir, ctx)
                except UserError as e:
                    print(f"  note: {item['name']} (only needed to derive the split) is missing: {e}")
    if key == "imagenet":
        try:
            prepare_imagenet(ctx, dataset_dir)
        except ManualStep as e:
            if errors:
                raise UserError(" | ".join(errors + [str(e)])) from e
            raise
    if errors:
        manual = f" Note: {spec['manual']}." if spec.get("manual") else ""
        raise UserError(" | ".join(errors) + manual)
    check_split(cls, dataset_dir)
    print(f"  {key} is ready")


# ----------------------------------------------------------------------------------------------
# ImageNet: the archives need a login; the rest of the layout is done here

def _image_files(folder):
    return [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")] \
        if os.path.isdir(folder) else []


def _has_subdirs(folder):
    return os.path.isdir(folder) and any(e.is_dir() for e in os.scandir(folder))


def _find_archive(name, ctx, dataset_dir):
    for folder in (ctx.download_dir, dataset_dir):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def _verify_md5(path, md5):
    print(f"  checking the MD5 of {path} (large files take minutes)")
    if not _md5_ok(path, md5):
        raise UserError(f"{path} does not match its published MD5 {md5}; download it again")


def extract_imagenet_train(archive, train_dir):
    """The train archive holds one tar per class: each becomes train/<wnid>/ (a class at a time, so an
    interrupted run resumes at the class it stopped in)."""
    os.makedirs(train_dir, exist_ok=True)
    with tarfile.open(archive, "r|") as outer, tqdm(desc="ImageNet train classes", unit=" classes") as bar:
        for member in outer:
            wnid = os.path.basename(member.name)
            for suffix in ARCHIVE_SUFFIXES:
                wnid = wnid[:-len(suffix)] if wnid.endswith(suffix) else wnid
            dst = os.path.join(train_dir, wnid)
            if member.isfile() and not os.path.isdir(dst):
                partial = dst + ".partial"
                shutil.rmtree(partial, ignore_errors=True)
                with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                    inner.extractall(partial, filter="data")
                os.replace(partial, dst)
            bar.update()


def read_val_labels(path):
    """{val image file name: wnid} from a user file: lines such as ``ILSVRC2012_val_00000001.JPEG n01751748``
    or Kaggle's LOC_val_solution.csv (``ILSVRC2012_val_00000001,n01751748 x y x y ...``)."""
    mapping = {}
    with open(path) as f:
        for line in f:
            tokens = [t for t in re.split(r"[,\s]+", line.strip()) if t]
            wnids = [t for t in tokens[1:] if re.fullmatch(r"n\d{8}", t)]
            if not tokens or not wnids:
                continue  # header or blank line
            name = tokens[0] if "." in tokens[0] else tokens[0] + ".JPEG"
            mapping[name] = wnids[0]
    if not mapping:
        raise UserError(f"{path} holds no '<file name> <wnid>' lines")
    return mapping


def devkit_val_labels(devkit):
    """{val image file name: wnid} from ILSVRC2012_devkit_t12 (.tar.gz or extracted folder): the ground-truth
    file gives the ILSVRC2012_ID of the i-th val image, meta.mat maps IDs to wnids."""
    from scipy.io import loadmat

    wanted = {"meta": "data/meta.mat", "truth": "data/ILSVRC2012_validation_ground_truth.txt"}
    blobs = {}
    if os.path.isdir(devkit):
        for key, rel in wanted.items():
            with open(os.path.join(devkit, rel), "rb") as f:
                blobs[key] = f.read()
    else:
        with tarfile.open(devkit, "r:*") as tf:
            for member in tf:
                for key, rel in wanted.items():
                    if member.name.endswith(rel):
                        blobs[key] = tf.extractfile(member).read()
    if len(blobs) != 2:
        raise UserError(f"{devkit} lacks {' or '.join(wanted.values())}")
    synsets = loadmat(io.BytesIO(blobs["meta"]), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    ids = [int(x) for x in blobs["truth"].decode().split()]
    return {f"ILSVRC2012_val_{i:08d}.JPEG": id_to_wnid[k] for i, k in enumerate(ids, start=1)}


def sort_val(val_dir, mapping):
    loose = sorted(_image_files(val_dir))
    unknown = [f for f in loose if f not in mapping]
    if unknown:
        raise UserError(f"{len(unknown)} val image(s) have no label in the mapping (e.g. {unknown[0]})")
    for name in tqdm(loose, desc="sorting ImageNet val", unit=" images"):
        os.makedirs(os.path.join(val_dir, mapping[name]), exist_ok=True)
        os.replace(os.path.join(val_dir, name), os.path.join(val_dir, mapping[name], name))


def prepare_imagenet(ctx, dataset_dir):
    train_dir = os.path.join(dataset_dir, "images", "train")
    val_dir = os.path.join(dataset_dir, "images", "val")
    archives = {name: (size, md5) for name, size, md5 in IMAGENET_ARCHIVES}
    needed = []

    if not _has_subdirs(train_dir):
        archive = _find_archive("ILSVRC2012_img_train.tar", ctx, dataset_dir)
        if archive:
            _verify_md5(archive, archives["ILSVRC2012_img_train.tar"][1])
            extract_imagenet_train(archive, train_dir)
        else:
            needed.append("ILSVRC2012_img_train.tar")

    devkit = _find_archive("ILSVRC2012_devkit_t12.tar.gz", ctx, dataset_dir) or next(
        (p for p in (os.path.join(ctx.download_dir, "ILSVRC2012_devkit_t12"),
                     os.path.join(dataset_dir, "ILSVRC2012_devkit_t12")) if os.path.isdir(p)), None)
    if not _image_files(val_dir) and not _has_subdirs(val_dir):
        archive = _find_archive("ILSVRC2012_img_val.tar", ctx, dataset_dir)
        if archive:
            _verify_md5(archive, archives["ILSVRC2012_img_val.tar"][1])
            partial = val_dir + ".partial"  # renamed when complete, so a half-extracted folder is never taken as done
            shutil.rmtree(partial, ignore_errors=True)
            extract(archive, partial)
            os.replace(partial, val_dir)
        else:
            needed.append("ILSVRC2012_img_val.tar")
            if not (devkit or ctx.val_labels):  # the official val archive is flat
                needed.append("ILSVRC2012_devkit_t12.tar.gz")
    if _image_files(val_dir):  # flat, as in the official archive: sort into wnid folders
        if ctx.val_labels:
            sort_val(val_dir, read_val_labels(ctx.val_labels))
        elif devkit:
            if devkit.endswith(".tar.gz"):
                _verify_md5(devkit, archives["ILSVRC2012_devkit_t12.tar.gz"][1])
            sort_val(val_dir, devkit_val_labels(devkit))
        else:
            needed.append("ILSVRC2012_devkit_t12.tar.gz")

    if needed:
        lines = [f"ImageNet needs an account: log in at https://image-net.org, open the ILSVRC 2012 download page "
                 f"and download", *[f"    {n}  ({archives[n][0]}, md5 {archives[n][1]})" for n in needed],
                 f"  into {ctx.download_dir}/ and run this command again.",
                 f"  Already have ImageNet? Link its train folder (1,000 wnid folders) to {train_dir} and its val "
                 f"folder to {val_dir}; a flat val folder is sorted with the devkit above or with "
                 "--val-labels FILE ('<file name> <wnid>' lines, or Kaggle's LOC_val_solution.csv)."]
        print("\n".join(lines))
        raise ManualStep(f"ImageNet: download {', '.join(needed)} by hand into {ctx.download_dir} (see above)")
    n_train, n_val = (sum(e.is_dir() for e in os.scandir(d)) for d in (train_dir, val_dir))
    print(f"  images/train: {n_train} class folders, images/val: {n_val} class folders")
    if n_train != n_val:
        raise UserError(f"{train_dir} and {val_dir} hold different numbers of class folders")


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    keys = list(SOURCES)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=keys + ["all"])
    parser.add_argument("--root", required=True, help="folder that holds the dataset folders (DATASET.ROOT)")
    parser.add_argument("--download-dir", help="where archives are downloaded (default: ROOT/downloads)")
    parser.add_argument("--mirror", default=os.environ.get("VLPROMPT_DATA_MIRROR"),
                        help="URL or folder serving files under their own names, tried after the official "
                             "sources (default: $VLPROMPT_DATA_MIRROR)")
    parser.add_argument("--keep-archives", action="store_true", help="keep the archives after extraction")
    parser.add_argument("--with-raw", action="store_true",
                        help="also fetch the raw annotations needed only to derive a split (fetched anyway when "
                             "the split file cannot be had)")
    parser.add_argument("--val-labels", help="ImageNet: '<val file name> <wnid>' lines used to sort a flat val folder")
    args = parser.parse_args(argv)

    ctx = Context(args.root, args.download_dir, args.mirror, args.keep_archives, args.val_labels, args.with_raw)
    os.makedirs(ctx.root, exist_ok=True)
    status = {}
    for key in keys if args.dataset == "all" else [args.dataset]:
        try:
            prepare(key, ctx)
            status[key] = "ready"
        except ManualStep as e:
            status[key] = f"needs a manual step: {e}"
        except UserError as e:
            status[key] = f"FAILED: {e}"
        print(f"  {key}: {status[key]}")
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    if len(status) > 1:
        print("\nSummary")
        for key, text in status.items():
            print(f"  {key:16s} {text if text == 'ready' else text.split(':')[0] + ' (see above)'}")
    return 0 if all(s == "ready" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
