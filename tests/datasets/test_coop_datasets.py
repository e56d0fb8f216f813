"""The 10 CoOp datasets other than ImageNet: class names, labels, splits, few-shot, base/new."""
import json
import math
import os
import random
from collections import OrderedDict

import pytest

from engine.data.datasets import build_dataset

from .fakes import COOP_BUILDERS, make_caltech101, make_dtd, write_json
from .loading import load, make_cfg, records

KEYS = sorted(COOP_BUILDERS)


def reference_fewshot(rows, k):
    """docs/design/datasets.md §5.1: groups by first appearance of the label, random.sample inside each group."""
    groups = OrderedDict()
    for row in rows:
        groups.setdefault(row[1], []).append(row)
    out = []
    for group in groups.values():
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


@pytest.mark.parametrize("key", KEYS)
def test_split_file_gives_names_labels_and_lists_in_file_order(root, key):
    fake = COOP_BUILDERS[key](root)
    fake.write_split(root)
    ds = load(root, fake.name)
    prefix = fake.image_dir(root)
    assert ds.classnames == fake.classnames
    assert ds.num_classes == len(fake.classnames)
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == fake.sizes
    for part, items in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
        assert records(items, prefix) == fake.split[part]
    assert all(ds.lab2cname[item.label] == item.classname for item in ds.test)
    assert os.path.isdir(os.path.join(fake.dataset_dir(root), "split_fewshot"))


@pytest.mark.parametrize("key", KEYS)
def test_split_derived_from_raw_annotations(root, key):
    fake = COOP_BUILDERS[key](root)
    ds = load(root, fake.name, seed=3)
    assert ds.classnames == fake.classnames
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == fake.raw_sizes
    every = ds.train_x + ds.val + ds.test
    assert len({item.impath for item in every}) == len(every)  # a partition: nothing twice
    assert all(ds.lab2cname[item.label] == item.classname for item in every)
    if fake.split_file is None:  # FGVCAircraft: the official lists, as they are
        for part, items in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
            assert [f"{os.path.basename(i.impath)[:-4]} {i.classname}" for i in items] == fake.extra["lists"][part]
        return
    # the derived split is saved in the split-file format and read back identically
    split_path = os.path.join(fake.dataset_dir(root), fake.split_file)
    with open(split_path) as f:
        text = f.read()
    saved = json.loads(text)
    assert saved["train"] == records(ds.train_x, fake.image_dir(root))
    assert text.startswith('{\n    "train": [\n        [\n')  # Dassl's json formatting
    again = load(root, fake.name, seed=3)
    assert records(again.test, fake.image_dir(root)) == saved["test"]
    # same seed and folder -> same split
    os.remove(split_path)
    assert records(load(root, fake.name, seed=3).train_x, fake.image_dir(root)) == saved["train"]


def test_folder_split_follows_the_official_random_order(root):
    """Caltech101: code-point sorted classes (ignored ones dropped), per class shuffle of the listing."""
    fake = make_caltech101(root)
    ds = load(root, "Caltech101", seed=7)
    image_dir = fake.image_dir(root)
    random.seed(7)
    train = []
    categories = sorted(c for c in os.listdir(image_dir) if c not in ("BACKGROUND_Google", "Faces_easy"))
    assert categories[:3] == ["Faces", "Leopards", "Motorbikes"]
    for category in categories:
        files = os.listdir(os.path.join(image_dir, category))
        random.shuffle(files)
        train += [f"{category}/{f}" for f in files[:round(len(files) * 0.5)]]
    assert [os.path.relpath(i.impath, image_dir) for i in ds.train_x] == train
    assert ds.classnames[:4] == ["face", "leopard", "motorbike", "accordion"]


@pytest.mark.parametrize("key", KEYS)
def test_fewshot_subset_is_reproducible_and_cached_as_json(root, key):
    fake = COOP_BUILDERS[key](root)
    fake.write_split(root)
    ds = load(root, fake.name, shots=2, seed=5)
    prefix = fake.image_dir(root)

    random.seed(5)
    expected_train = reference_fewshot(fake.split["train"], 2)
    expected_val = reference_fewshot(fake.split["val"], 2)
    assert records(ds.train_x, prefix) == expected_train
    assert records(ds.val, prefix) == expected_val
    assert len(ds.train_x) == 2 * len(fake.classnames)
    assert records(ds.test, prefix) == fake.split["test"]

    cache = os.path.join(fake.dataset_dir(root), "split_fewshot", "shot_2-seed_5.json")
    with open(cache) as f:
        data = json.load(f)
    assert data["train"] == expected_train and data["val"] == expected_val and data["fingerprint"]

    again = load(root, fake.name, shots=2, seed=5)  # now from the cache
    assert records(again.train_x, prefix) == expected_train
    assert records(again.val, prefix) == expected_val


def test_cache_hit_draws_no_random_numbers(root):
    fake = make_dtd(root)
    fake.write_split(root)
    load(root, "DescribableTextures", shots=4, seed=2)
    random.seed(99)
    state = random.getstate()
    build_dataset(make_cfg(root, "DescribableTextures", shots=4, seed=2))
    assert random.getstate() == state


def test_fewshot_test_vector_of_the_spec(root):
    """docs/design/datasets.md §5.2: labels [2,0,1,0,2,1,0,2,1,0,1,2], seed 1, K=2 -> [4, 7, 1, 3, 2, 5]; then val."""
    fake = make_dtd(root)
    names = ["banded", "blotchy", "braided"]
    train_labels = [2, 0, 1, 0, 2, 1, 0, 2, 1, 0, 1, 2]
    val_labels = [0, 1, 2, 0, 1, 2, 0, 1, 2]
    split = {
        "train": [[f"{names[y]}/{names[y]}_{i + 1:04d}.jpg", y, names[y]] for i, y in enumerate(train_labels)],
        "val": [[f"{names[y]}/{names[y]}_{i + 1:04d}.jpg", y, names[y]] for i, y in enumerate(val_labels)],
        "test": [[f"{names[y]}/{names[y]}_0001.jpg", y, names[y]] for y in range(3)],
    }
    for i in range(12):  # the fake tree has 8 images per class; add the rest
        for n in names:
            path = os.path.join(fake.image_dir(root), n, f"{n}_{i + 1:04d}.jpg")
            if not os.path.exists(path):
                with open(os.path.join(fake.image_dir(root), n, f"{n}_0001.jpg"), "rb") as src, open(path, "wb") as dst:
                    dst.write(src.read())
    write_json(os.path.join(fake.dataset_dir(root), fake.split_file), split)
    ds = load(root, "DescribableTextures", shots=2, seed=1)
    prefix = fake.image_dir(root)
    train_rows = [tuple(r) for r in records(ds.train_x, prefix)]
    val_rows = [tuple(r) for r in records(ds.val, prefix)]
    assert [[tuple(r) for r in split["train"]].index(r) for r in train_rows] == [4, 7, 1, 3, 2, 5]
    assert [[tuple(r) for r in split["val"]].index(r) for r in val_rows] == [3, 6, 7, 4, 2, 8]


@pytest.mark.parametrize("key", KEYS)
def test_base_and_new_classes_are_relabelled_from_zero(root, key):
    fake = COOP_BUILDERS[key](root)
    fake.write_split(root)
    n = len(fake.classnames)
    m = math.ceil(n / 2)
    base = load(root, fake.name, shots=2, seed=1, subsample="base")
    new = load(root, fake.name, shots=2, seed=1, subsample="new")
    full = load(root, fake.name, shots=2, seed=1)
    assert base.classnames == fake.classnames[:m]
    assert new.classnames == fake.classnames[m:]
    assert sorted({i.label for i in new.test}) == list(range(n - m))
    # the same items, in the same order, as the full run restricted to those classes
    for part in ("train_x", "val", "test"):
        full_items = getattr(full, part)
        assert [(i.impath, i.label) for i in getattr(base, part)] == \
            [(i.impath, i.label) for i in full_items if i.label < m]
        assert [(i.impath, i.label) for i in getattr(new, part)] == \
            [(i.impath, i.label - m) for i in full_items if i.label >= m]
    # base and new runs of one seed share one few-shot cache file
    assert os.listdir(os.path.join(fake.dataset_dir(root), "split_fewshot")) == ["shot_2-seed_1.json"]


def test_stale_fewshot_cache_is_drawn_again(root, capsys):
    fake = make_caltech101(root)
    fake.write_split(root)
    first = load(root, "Caltech101", shots=2, seed=1)
    # the split file is replaced (one train image dropped): the cached subset no longer belongs to it
    fake.split["train"] = fake.split["train"][1:]
    fake.write_split(root)
    capsys.readouterr()
    second = load(root, "Caltech101", shots=2, seed=1)
    out = capsys.readouterr().out
    assert "drawing the subset again" in out and "Saving preprocessed few-shot data" in out
    random.seed(1)
    expected = reference_fewshot(fake.split["train"], 2)
    assert records(second.train_x, fake.image_dir(root)) == expected
    assert len(first.train_x) == len(second.train_x)
    # and it is stable from then on
    capsys.readouterr()
    load(root, "Caltech101", shots=2, seed=1)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out


def test_fewshot_cache_is_plain_json_and_dassl_pickles_are_never_read(root):
    fake = make_caltech101(root)
    fake.write_split(root)
    fewshot_dir = os.path.join(fake.dataset_dir(root), "split_fewshot")
    os.makedirs(fewshot_dir)
    with open(os.path.join(fewshot_dir, "shot_1-seed_1.pkl"), "wb") as f:
        f.write(b"\x80\x04 not a pickle: unpickling this would fail")
    ds = load(root, "Caltech101", shots=1, seed=1)
    assert len(ds.train_x) == len(fake.classnames)
    with open(os.path.join(fewshot_dir, "shot_1-seed_1.json"), "rb") as f:
        data = json.loads(f.read())
    assert set(data) == {"format", "fingerprint", "train", "val"}
    assert all(isinstance(r[0], str) and not os.path.isabs(r[0]) for r in data["train"])


def test_dataset_folder_can_move(root, tmp_path, capsys):
    """Cache paths are relative, so a moved DATA folder keeps its few-shot subsets."""
    fake = make_caltech101(root)
    fake.write_split(root)
    first = load(root, "Caltech101", shots=2, seed=1)
    moved = str(tmp_path / "elsewhere")
    os.rename(root, moved)
    capsys.readouterr()
    second = load(moved, "Caltech101", shots=2, seed=1)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert records(second.train_x, moved) == records(first.train_x, root)
