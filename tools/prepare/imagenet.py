"""ImageNet: the archives need a login, so the user downloads them; the rest of the layout is done here
(train: one folder per class from the per-class tars; val: sorted into class folders by the devkit's ground
truth or a user's label file)."""
import io
import os
import re
import shutil
import tarfile

from tqdm import tqdm

from engine.utils.tools import UserError

from .archives import ARCHIVE_SUFFIXES, extract
from .fetch import md5_ok

IMAGENET_ARCHIVES = [  # name, approximate size, MD5 (as published with torchvision)
    ("ILSVRC2012_img_train.tar", "138 GB", "1d675b47d978889d74fa0da5fadfb00e"),
    ("ILSVRC2012_img_val.tar", "6.3 GB", "29b22e2961454d5413ddabcf34fc5622"),
    ("ILSVRC2012_devkit_t12.tar.gz", "2.5 MB", "fa75699e90414af021442c21a62c3abf"),
]


class ManualStep(UserError):
    """The user must download something by hand (ImageNet); not a failure of the tool."""


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
    if not md5_ok(path, md5):
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
        lines = ["ImageNet needs an account: log in at https://image-net.org, open the ILSVRC 2012 download page "
                 "and download", *[f"    {n}  ({archives[n][0]}, md5 {archives[n][1]})" for n in needed],
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
