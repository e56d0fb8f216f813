"""Mistakes in the user's data: each ends with a message naming the path and the command that fixes it."""
import json
import os
import shutil

import pytest

import datasets.common as common
from engine.utils.tools import UserError

from .fakes import make_caltech101, make_oxford_pets
from .loading import load


def test_missing_root(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match=f"{missing} does not exist.*python tools/prepare_data.py caltech101 "
                                        f"--root {missing}"):
        load(missing, "Caltech101")


def test_empty_root():
    with pytest.raises(UserError, match="DATASET.ROOT is empty.*--root"):
        load("", "OxfordPets")


def test_missing_dataset_folder(root):
    with pytest.raises(UserError, match=f"expected {root}/oxford_pets; prepare it with: python tools/prepare_data.py "
                                        f"oxford_pets --root {root}"):
        load(root, "OxfordPets")


def test_missing_split_file_and_annotations(root):
    make_oxford_pets(root)
    shutil.rmtree(os.path.join(root, "oxford_pets", "annotations"))
    with pytest.raises(UserError, match="split_zhou_OxfordPets.json.*annotations/trainval.txt.*prepare_data.py "
                                        "oxford_pets"):
        load(root, "OxfordPets")


def test_class_folder_of_the_split_missing_on_disk_is_reported(root):
    fake = make_caltech101(root)
    fake.write_split(root)
    shutil.rmtree(os.path.join(fake.image_dir(root), "ant"))
    with pytest.raises(UserError, match=r"8 image\(s\) listed in split file .* do not exist; folder\(s\) missing on "
                                        r"disk: .*101_ObjectCategories/ant\. .*prepare_data.py caltech101"):
        load(root, "Caltech101", subsample="new")


def test_split_file_that_is_a_web_page(root):
    fake = make_caltech101(root)
    with open(os.path.join(fake.dataset_dir(root), fake.split_file), "w") as f:
        f.write("<!DOCTYPE html><html>Google Drive - quota exceeded</html>")
    with pytest.raises(UserError, match="not valid JSON.*delete it and fetch it again"):
        load(root, "Caltech101")


def _corrupt(fake, root):
    """Truncate one train image and write garbage into one test image."""
    train_rel, test_rel = fake.split["train"][0][0], fake.split["test"][-1][0]
    truncated = os.path.join(fake.image_dir(root), train_rel)
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    garbage = os.path.join(fake.image_dir(root), test_rel)
    with open(garbage, "wb") as f:
        f.write(b"this is not an image")
    return truncated, garbage


def test_corrupt_image_stops_the_run_naming_the_file(root, capsys):
    fake = make_caltech101(root)
    fake.write_split(root)
    truncated, garbage = _corrupt(fake, root)
    with pytest.raises(UserError, match="unreadable image .* and 1 more.*DATASET.SKIP_BAD_IMAGES True") as err:
        load(root, "Caltech101")
    out = capsys.readouterr().out
    assert truncated in out and garbage in out
    assert truncated in str(err.value) or garbage in str(err.value)


def test_corrupt_images_skipped_and_counted_on_request(root, capsys):
    fake = make_caltech101(root)
    fake.write_split(root)
    truncated, garbage = _corrupt(fake, root)
    ds = load(root, "Caltech101", skip_bad=True)
    assert "Skipped 2 unreadable image(s)" in capsys.readouterr().out
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (fake.sizes[0] - 1, fake.sizes[1], fake.sizes[2] - 1)
    assert truncated not in {i.impath for i in ds.train_x} and garbage not in {i.impath for i in ds.test}


def test_only_the_images_a_run_uses_are_checked_and_only_once(root, monkeypatch):
    fake = make_caltech101(root)
    fake.write_split(root)
    checked = []
    real = common._image_problem
    monkeypatch.setattr(common, "_image_problem", lambda path: checked.append(path) or real(path))
    load(root, "Caltech101", shots=1, seed=1)
    n_classes = len(fake.classnames)
    assert len(checked) == n_classes + n_classes + fake.sizes[2]  # 1-shot train, 1-shot val, full test
    checked.clear()
    load(root, "Caltech101", shots=1, seed=1)
    assert checked == []  # remembered by size and mtime
    with open(os.path.join(fake.dataset_dir(root), "image_check.json")) as f:
        assert len(json.load(f)["ok"]) == 2 * n_classes + fake.sizes[2]
    # a replaced file is checked again
    victim = os.path.join(fake.image_dir(root), fake.split["test"][0][0])
    with open(victim, "ab") as f:
        f.write(b"\0")
    load(root, "Caltech101", shots=1, seed=1)
    assert checked == [victim]


def test_split_with_files_missing_from_a_present_folder(root):
    fake = make_oxford_pets(root)
    fake.write_split(root)
    os.remove(os.path.join(fake.image_dir(root), "Bengal_3.jpg"))
    with pytest.raises(UserError, match=r"1 image\(s\) listed .* do not exist; e\.g\. .*Bengal_3\.jpg"):
        load(root, "OxfordPets")
