"""Datum / DatasetBase with Dassl's semantics (docs/design/datasets.md §1, §5, §6)."""
import math
import os
import random
from collections import OrderedDict, defaultdict

from ...utils.tools import UserError


class Datum:
    """One labelled image. Attribute names match Dassl's so caches and code written for it keep working."""

    __slots__ = ("_impath", "_label", "_domain", "_classname")

    def __init__(self, impath="", label=0, domain=0, classname="", check_file=True):
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}")
        if check_file and not os.path.isfile(impath):
            raise UserError(f"image file not found: {impath} (is DATASET.ROOT right and the dataset complete?)")
        self._impath = impath
        self._label = int(label)
        self._domain = int(domain)
        self._classname = classname

    impath = property(lambda self: self._impath)
    label = property(lambda self: self._label)
    domain = property(lambda self: self._domain)
    classname = property(lambda self: self._classname)

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k in self.__slots__:
            object.__setattr__(self, k, state[k])

    def __eq__(self, other):
        return isinstance(other, Datum) and self.__getstate__() == other.__getstate__()

    def __hash__(self):
        return hash((self._impath, self._label, self._domain, self._classname))

    def __repr__(self):
        return f"Datum({self._impath!r}, label={self._label}, classname={self._classname!r})"


class DatasetBase:
    """Holds train_x / train_u / val / test lists of Datum; class info derives from train_x (Dassl)."""

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        if not train_x:
            raise UserError(f"{type(self).__name__}: the training split has no images, so there are no classes "
                            "(an empty split file or image folder, or DATASET.SUBSAMPLE_CLASSES on too few classes)")
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    train_x = property(lambda self: self._train_x)
    train_u = property(lambda self: self._train_u)
    val = property(lambda self: self._val)
    test = property(lambda self: self._test)
    lab2cname = property(lambda self: self._lab2cname)
    classnames = property(lambda self: self._classnames)
    num_classes = property(lambda self: self._num_classes)

    @staticmethod
    def get_num_classes(data_source):
        """max label + 1, as Dassl (not the number of distinct labels)."""
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source):
        pairs = {(item.label, item.classname) for item in data_source}
        mapping = {label: name for label, name in pairs}
        labels = sorted(mapping)
        return mapping, [mapping[label] for label in labels]

    @staticmethod
    def split_dataset_by_label(data_source):
        """label -> items, keys in order of first appearance."""
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    @staticmethod
    def split_dataset_by_domain(data_source):
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """K items per label with Python's global ``random`` exactly as Dassl (docs/design/datasets.md §5.1)."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    dataset.extend(random.sample(items, num_shots))
                elif repeat:
                    dataset.extend(random.choices(items, k=num_shots))
                else:
                    dataset.extend(items)
            output.append(dataset)
        return output[0] if len(output) == 1 else output


def check_num_shots(num_shots):
    """DATASET.NUM_SHOTS: K >= 1 images per class, or -1 / 0 for all of them (Dassl's "< 1")."""
    if num_shots < -1:
        raise UserError(f"DATASET.NUM_SHOTS must be a positive number of images per class, or -1 for all of "
                        f"them, got {num_shots}")


def check_enough_shots(items, num_shots, what, cap=False):
    """Every class of ``items`` must have ``num_shots`` images: an error naming the counts, or with ``cap`` a
    warning naming the short classes (which then use all their images, as Dassl does silently)."""
    counts = defaultdict(int)
    names = {}
    for item in items:
        counts[item.label] += 1
        names[item.label] = item.classname
    short = sorted((n, names[label]) for label, n in counts.items() if n < num_shots)
    if not short:
        return
    listed = ", ".join(f"{name} {n}" for n, name in short[:5]) + (" ..." if len(short) > 5 else "")
    if cap:
        print(f"Warning: DATASET.NUM_SHOTS {num_shots}: {len(short)} of {len(counts)} classes of {what} have fewer "
              f"images and use all of them ({listed}) (DATASET.CAP_SHOTS True)")
        return
    raise UserError(f"DATASET.NUM_SHOTS {num_shots} is more than the images of {len(short)} of {len(counts)} classes "
                    f"of {what} (images per class: {listed}; fewest {short[0][0]}): lower NUM_SHOTS to at most "
                    f"{short[0][0]}, or set DATASET.CAP_SHOTS True to use all images of the short classes")


def subsample_classes(*args, subsample="all"):
    """Keep the first (base) or second (new) half of the sorted labels and relabel from 0 (docs/design/datasets.md
    §6)."""
    if subsample not in ("all", "base", "new"):
        raise UserError(f"DATASET.SUBSAMPLE_CLASSES must be all, base or new, got {subsample!r}")
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = OrderedDict((y, y_new) for y_new, y in enumerate(selected))
    output = []
    for dataset in args:
        output.append([
            Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname, check_file=False)
            for item in dataset if item.label in relabeler
        ])
    return output
