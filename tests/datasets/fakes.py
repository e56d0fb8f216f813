"""Tiny fake copies of the 15 benchmark datasets in their real layouts (file-name patterns, annotation
files, split json). Each builder writes images and raw annotations under ``root`` and returns a Fake
with the expectations a loader must meet. ``make_caltech`` writes the learnable Caltech101 tree the
training tests run on (a colour per class)."""
import io
import json
import os
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.io import savemat


def _jpeg_bytes(image):
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg_bytes(Image.new("RGB", (8, 8), (120, 30, 200)))


def write_image(path, data=JPEG):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=4, separators=(", ", ": "))


@dataclass
class Fake:
    name: str                 # registry name
    key: str                  # tools/prepare_data.py key
    folder: str               # dataset folder under ROOT
    prefix: str               # split paths are relative to ROOT/folder/prefix
    classnames: list          # expected class names in label order
    split: dict = None        # expected train/val/test rows [path, label, classname]; the authors' split file
    split_file: str = None
    raw_sizes: tuple = None   # train/val/test sizes when derived from the raw annotations
    extra: dict = field(default_factory=dict)

    def dataset_dir(self, root):
        return os.path.join(root, self.folder)

    def image_dir(self, root):
        return os.path.join(root, self.folder, self.prefix)

    def write_split(self, root):
        if self.split_file is None:  # FGVCAircraft: the official lists are the split
            return
        write_json(os.path.join(self.dataset_dir(root), self.split_file), self.split)

    @property
    def sizes(self):
        return tuple(len(self.split[k]) for k in ("train", "val", "test"))


def _split_per_class(per_class, n_train=4, n_val=2):
    """An authors'-style split: per class the first n_train items train, the next n_val val, the rest test;
    classes interleaved, highest label first, so list order differs from label order."""
    split = {"train": [], "val": [], "test": []}
    for i in range(max(len(items) for items in per_class.values())):
        for label in sorted(per_class, reverse=True):
            if i < len(per_class[label]):
                rel, name = per_class[label][i]
                split["train" if i < n_train else "val" if i < n_train + n_val else "test"].append([rel, label, name])
    return split


def _folder_per_class(root, folder, image_subdir, classes, new_cnames, pattern, n=8, ignored=()):
    """Folder-per-class tree; classes labelled by code-point order as the official derivation does."""
    image_dir = os.path.join(root, folder, image_subdir)
    for cat in list(classes) + list(ignored):
        for i in range(1, n + 1):
            write_image(os.path.join(image_dir, cat, pattern.format(cat=cat, i=i)))
    per_class = {}
    for label, cat in enumerate(sorted(classes)):
        name = new_cnames.get(cat, cat)
        per_class[label] = [(f"{cat}/{pattern.format(cat=cat, i=i)}", name) for i in range(1, n + 1)]
    names = [new_cnames.get(c, c) for c in sorted(classes)]
    return per_class, names


def make_caltech101(root):
    classes = ["Faces", "Leopards", "Motorbikes", "accordion", "airplanes", "ant"]
    renames = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
    per_class, names = _folder_per_class(root, "caltech-101", "101_ObjectCategories", classes, renames,
                                         "image_{i:04d}.jpg", ignored=["BACKGROUND_Google", "Faces_easy"])
    return Fake("Caltech101", "caltech101", "caltech-101", "101_ObjectCategories", names,
                _split_per_class(per_class), "split_zhou_Caltech101.json", raw_sizes=(24, 12, 12))


CLASSES = ["accordion", "airplanes", "anchor", "ant", "barrel", "bass"]  # make_caltech's default classes


def make_caltech(root, classes=CLASSES, n_train=4, n_val=2, n_test=3, seed=0, size=(40, 48)):
    """Caltech101 in CoOp's layout (101_ObjectCategories/<cat>/image_000N.jpg + split_zhou_Caltech101.json)
    that a tiny model can learn: each class its own colour, with noise pixels. Returns ``root``."""
    rng = random.Random(seed)
    base = os.path.join(root, "caltech-101")
    split = {"train": [], "val": [], "test": []}
    for label, cat in enumerate(classes):
        colour = tuple(rng.randrange(256) for _ in range(3))
        name = {"airplanes": "airplane"}.get(cat, cat)
        for i in range(n_train + n_val + n_test):
            img = Image.new("RGB", size, colour)
            px = img.load()
            for _ in range(60):
                px[rng.randrange(size[0]), rng.randrange(size[1])] = tuple(rng.randrange(256) for _ in range(3))
            rel = f"{cat}/image_{i + 1:04d}.jpg"
            write_image(os.path.join(base, "101_ObjectCategories", rel), _jpeg_bytes(img))
            split["train" if i < n_train else "val" if i < n_train + n_val else "test"].append([rel, label, name])
    write_json(os.path.join(base, "split_zhou_Caltech101.json"), split)
    return root


def make_dtd(root):
    classes = ["banded", "blotchy", "braided", "bubbly", "bumpy"]
    per_class, names = _folder_per_class(root, "dtd", "images", classes, {}, "{cat}_{i:04d}.jpg")
    write_text(os.path.join(root, "dtd", "labels", "train1.txt"), [f"banded/banded_{i:04d}.jpg" for i in (1, 2)])
    os.makedirs(os.path.join(root, "dtd", "imdb"), exist_ok=True)
    return Fake("DescribableTextures", "dtd", "dtd", "images", names, _split_per_class(per_class),
                "split_zhou_DescribableTextures.json", raw_sizes=(20, 10, 10))


def make_eurosat(root):
    classes = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "SeaLake"]
    renames = {"AnnualCrop": "Annual Crop Land", "Forest": "Forest",
               "HerbaceousVegetation": "Herbaceous Vegetation Land",
               "Highway": "Highway or Road", "SeaLake": "Sea or Lake"}
    per_class, names = _folder_per_class(root, "eurosat", "2750", classes, renames, "{cat}_{i}.jpg")
    return Fake("EuroSAT", "eurosat", "eurosat", "2750", names, _split_per_class(per_class),
                "split_zhou_EuroSAT.json", raw_sizes=(20, 10, 10))


def make_food101(root):
    classes = ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beignets"]
    per_class, names = _folder_per_class(root, "food-101", "images", classes, {}, "10{i:04d}.jpg")
    write_text(os.path.join(root, "food-101", "meta", "classes.txt"), classes)
    write_text(os.path.join(root, "food-101", "README.txt"), ["Food-101"])
    write_text(os.path.join(root, "food-101", "license_agreement.txt"), ["..."])
    return Fake("Food101", "food101", "food-101", "images", names, _split_per_class(per_class),
                "split_zhou_Food101.json", raw_sizes=(20, 10, 10))


PET_BREEDS = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "Bengal"]


def make_oxford_pets(root):
    base = os.path.join(root, "oxford_pets")
    trainval, test, per_class = [], [], {}
    for label, breed in enumerate(PET_BREEDS):
        species = 1 if breed[0].isupper() else 2  # cats are capitalised in the real file names
        per_class[label] = []
        for i in range(1, 9):
            write_image(os.path.join(base, "images", f"{breed}_{i}.jpg"))
            (trainval if i <= 6 else test).append(f"{breed}_{i} {label + 1} {species} {label + 1}")
            per_class[label].append((f"{breed}_{i}.jpg", breed.lower()))
    write_text(os.path.join(base, "annotations", "trainval.txt"), trainval)
    write_text(os.path.join(base, "annotations", "test.txt"), test)
    return Fake("OxfordPets", "oxford_pets", "oxford_pets", "images", [b.lower() for b in PET_BREEDS],
                _split_per_class(per_class), "split_zhou_OxfordPets.json", raw_sizes=(25, 5, 10))


CAR_NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012", "Tesla Model S Sedan 2012"]


def _cars_annos(labels):
    rec = np.zeros((1, len(labels)), dtype=[("bbox_x1", "O"), ("bbox_y1", "O"), ("class", "O"), ("fname", "O")])
    for i, label in enumerate(labels):
        rec[0, i] = (np.array([[5]], np.uint8), np.array([[7]], np.uint8), np.array([[label + 1]], np.uint8),
                     f"{i + 1:05d}.jpg")
    return rec


def make_stanford_cars(root):
    base = os.path.join(root, "stanford_cars")
    train_labels = [i % 4 for i in range(24)]
    test_labels = [(i + 1) % 4 for i in range(8)]
    for folder, labels in (("cars_train", train_labels), ("cars_test", test_labels)):
        for i in range(len(labels)):
            write_image(os.path.join(base, folder, f"{i + 1:05d}.jpg"))
    os.makedirs(os.path.join(base, "devkit"))
    meta = np.empty((1, len(CAR_NAMES)), dtype=object)
    meta[0, :] = CAR_NAMES
    savemat(os.path.join(base, "devkit", "cars_meta.mat"), {"class_names": meta})
    savemat(os.path.join(base, "devkit", "cars_train_annos.mat"), {"annotations": _cars_annos(train_labels)})
    savemat(os.path.join(base, "cars_test_annos_withlabels.mat"), {"annotations": _cars_annos(test_labels)})
    names = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan", "2012 Tesla Model S Sedan"]
    split = {"train": [], "val": [], "test": []}
    for i, label in enumerate(train_labels):
        split["val" if i >= 20 else "train"].append([f"cars_train/{i + 1:05d}.jpg", label, names[label]])
    split["test"] = [[f"cars_test/{i + 1:05d}.jpg", label, names[label]] for i, label in enumerate(test_labels)]
    return Fake("StanfordCars", "stanford_cars", "stanford_cars", "", names, split,
                "split_zhou_StanfordCars.json", raw_sizes=(20, 4, 8))


FLOWER_NAMES = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells", "4": "sweet pea",
                "5": "english marigold"}


def make_oxford_flowers(root):
    base = os.path.join(root, "oxford_flowers")
    labels = [(i * 3) % 5 + 1 for i in range(40)]  # first appearance: 1, 4, 2, 5, 3
    for i in range(len(labels)):
        write_image(os.path.join(base, "jpg", f"image_{i + 1:05d}.jpg"))
    savemat(os.path.join(base, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    write_json(os.path.join(base, "cat_to_name.json"), FLOWER_NAMES)
    per_class = {lab - 1: [] for lab in range(1, 6)}
    for i, lab in enumerate(labels):
        per_class[lab - 1].append((f"image_{i + 1:05d}.jpg", FLOWER_NAMES[str(lab)]))
    return Fake("OxfordFlowers", "oxford_flowers", "oxford_flowers", "jpg", [FLOWER_NAMES[str(i)] for i in range(1, 6)],
                _split_per_class(per_class), "split_zhou_OxfordFlowers.json", raw_sizes=(20, 10, 10))


FGVC_VARIANTS = ["707-320", "727-200", "A300B4", "F/A-18", "Tu-154"]


def make_fgvc_aircraft(root):
    base = os.path.join(root, "fgvc_aircraft")
    write_text(os.path.join(base, "variants.txt"), FGVC_VARIANTS)
    image_id = 34309
    lists = {"train": [], "val": [], "test": []}
    for part in lists:
        for rep in range(2):
            for variant in reversed(FGVC_VARIANTS):
                write_image(os.path.join(base, "images", f"{image_id:07d}.jpg"))
                lists[part].append(f"{image_id:07d} {variant}")
                image_id += 7
    for part, lines in lists.items():
        write_text(os.path.join(base, f"images_variant_{part}.txt"), lines)
    write_text(os.path.join(base, "images_box.txt"), ["0034309 83 155 1821 822"])
    split = {part: [[line[:7] + ".jpg", FGVC_VARIANTS.index(line[8:]), line[8:]] for line in lines]
             for part, lines in lists.items()}
    return Fake("FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft", "images", FGVC_VARIANTS, split,
                raw_sizes=(10, 10, 10), extra={"lists": lists})


SUN_CLASSES = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop", "/c/cafeteria", "/c/campsite"]


def make_sun397(root):
    base = os.path.join(root, "sun397")
    write_text(os.path.join(base, "ClassName.txt"), SUN_CLASSES)
    train, test, per_class = [], [], {}
    names = ["abbey", "outdoor apartment_building", "shop bakery", "cafeteria", "campsite"]
    for label, cls in enumerate(SUN_CLASSES):
        per_class[label] = []
        for i in range(1, 9):
            rel = f"{cls[1:]}/sun_a{label}b{i:03d}.jpg"
            write_image(os.path.join(base, "SUN397", rel))
            (train if i <= 6 else test).append("/" + rel)
            per_class[label].append((rel, names[label]))
    write_text(os.path.join(base, "Training_01.txt"), train)
    write_text(os.path.join(base, "Testing_01.txt"), test)
    split = _split_per_class(per_class)
    return Fake("SUN397", "sun397", "sun397", "SUN397", names, split, "split_zhou_SUN397.json", raw_sizes=(25, 5, 10))


UCF_ACTIONS = ["ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "YoYo"]


def make_ucf101(root):
    base = os.path.join(root, "ucf101")
    lists = os.path.join(base, "ucfTrainTestlist")
    write_text(os.path.join(lists, "classInd.txt"), [f"{i + 1} {a}" for i, a in enumerate(UCF_ACTIONS)])
    train, test, per_class = [], [], {}
    names = ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling", "Yo_Yo"]
    for label, action in enumerate(UCF_ACTIONS):
        per_class[label] = []
        for g in range(1, 9):
            video = f"v_{action}_g{g:02d}_c01"
            write_image(os.path.join(base, "UCF-101-midframes", names[label], video + ".jpg"))
            if g <= 2:
                test.append(f"{action}/{video}.avi")
            else:
                train.append(f"{action}/{video}.avi {label + 1}")
            per_class[label].append((f"{names[label]}/{video}.jpg", names[label]))
    write_text(os.path.join(lists, "trainlist01.txt"), train)
    write_text(os.path.join(lists, "testlist01.txt"), test)
    split = _split_per_class(per_class)
    return Fake("UCF101", "ucf101", "ucf101", "UCF-101-midframes", names, split, "split_zhou_UCF101.json",
                raw_sizes=(25, 5, 10))


IMAGENET_CLASSES = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark"),
                    ("n01491361", "tiger shark"), ("n01494475", "hammerhead shark")]


def write_classnames(path, classes=IMAGENET_CLASSES):
    write_text(path, [f"{wnid} {name}" for wnid, name in classes])


def make_imagenet(root, n_train=6, n_val=3):
    base = os.path.join(root, "imagenet")
    write_classnames(os.path.join(base, "classnames.txt"))
    val_id = 1
    for wnid, _ in IMAGENET_CLASSES:
        for i in range(n_train):
            write_image(os.path.join(base, "images", "train", wnid, f"{wnid}_{10026 + i}.JPEG"))
        for _ in range(n_val):
            write_image(os.path.join(base, "images", "val", wnid, f"ILSVRC2012_val_{val_id:08d}.JPEG"))
            val_id += 1
    return Fake("ImageNet", "imagenet", "imagenet", "images", [name for _, name in IMAGENET_CLASSES],
                raw_sizes=(5 * n_train, 5 * n_val, 5 * n_val))


def make_imagenetv2(root):
    base = os.path.join(root, "imagenetv2")
    write_classnames(os.path.join(base, "classnames.txt"))
    for label in range(len(IMAGENET_CLASSES)):
        for i in range(2):
            write_image(os.path.join(base, "imagenetv2-matched-frequency-format-val", str(label),
                                     f"{label}f{i}e3.jpeg"))
    return Fake("ImageNetV2", "imagenetv2", "imagenetv2", "imagenetv2-matched-frequency-format-val",
                [n for _, n in IMAGENET_CLASSES], raw_sizes=(10, 0, 10))


def make_imagenet_sketch(root):
    base = os.path.join(root, "imagenet-sketch")
    write_classnames(os.path.join(base, "classnames.txt"))
    for wnid, _ in reversed(IMAGENET_CLASSES):
        for i in range(1, 4):
            write_image(os.path.join(base, "images", wnid, f"sketch_{i}.JPEG"))
    return Fake("ImageNetSketch", "imagenet_sketch", "imagenet-sketch", "images", [n for _, n in IMAGENET_CLASSES],
                raw_sizes=(15, 0, 15))


# ImageNet-A/R: 200 classes out of 1,000; fake wnids sort in the same order as their index.
MANY_CLASSES = [(f"n{10000000 + 7 * i:08d}", f"class {i}") for i in range(230)]


def make_imagenet_ar(root, which):
    folder, sub, name, key = {"a": ("imagenet-adversarial", "imagenet-a", "ImageNetA", "imagenet_a"),
                              "r": ("imagenet-rendition", "imagenet-r", "ImageNetR", "imagenet_r")}[which]
    base = os.path.join(root, folder)
    write_classnames(os.path.join(base, "classnames.txt"), MANY_CLASSES)
    chosen = MANY_CLASSES[::-1][:200]  # written in reverse order: labels must follow sorted wnids
    for wnid, _ in chosen:
        write_image(os.path.join(base, sub, wnid, "0.000116_digital clock _ digital clock_0.865662.jpg"))
    write_text(os.path.join(base, sub, "README.txt"), ["ImageNet-" + which.upper()])
    names = [n for _, n in sorted(chosen)]
    return Fake(name, key, folder, sub, names, raw_sizes=(200, 0, 200))


COOP_BUILDERS = {
    "caltech101": make_caltech101, "oxford_pets": make_oxford_pets, "stanford_cars": make_stanford_cars,
    "oxford_flowers": make_oxford_flowers, "food101": make_food101, "sun397": make_sun397, "dtd": make_dtd,
    "eurosat": make_eurosat, "ucf101": make_ucf101, "fgvc_aircraft": make_fgvc_aircraft,
}
