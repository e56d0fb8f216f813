"""ImageNet and its four test-only variants."""
import json
import os
import shutil

import pytest

from engine.utils.tools import UserError

from .fakes import IMAGENET_CLASSES, make_imagenet, make_imagenet_ar, make_imagenet_sketch, make_imagenetv2, write_image
from .loading import load


def test_imagenet_labels_follow_sorted_wnids_and_val_is_test(root):
    fake = make_imagenet(root)
    ds = load(root, "ImageNet")
    assert ds.classnames == fake.classnames
    assert (len(ds.train_x), len(ds.test)) == (30, 15)
    assert ds.val is ds.test
    for item in ds.train_x + ds.test:
        wnid = os.path.basename(os.path.dirname(item.impath))
        assert IMAGENET_CLASSES[item.label][0] == wnid
    listing = os.path.join(root, "imagenet", "preprocessed.json")
    with open(listing) as f:
        assert set(json.load(f)["train"]) == {w for w, _ in IMAGENET_CLASSES}


def test_imagenet_listing_is_cached_and_refreshed_when_folders_change(root, capsys):
    make_imagenet(root)
    load(root, "ImageNet")
    assert "Listing the ImageNet folders" in capsys.readouterr().out
    load(root, "ImageNet")
    assert "Listing the ImageNet folders" not in capsys.readouterr().out
    write_image(os.path.join(root, "imagenet", "images", "train", "n01443537", "n01443537_99.JPEG"))
    ds = load(root, "ImageNet")
    assert "Listing the ImageNet folders" in capsys.readouterr().out
    assert len(ds.train_x) == 31


def test_imagenet_fewshot_samples_train_only_and_base_new(root):
    make_imagenet(root)
    ds = load(root, "ImageNet", shots=2, seed=1)
    assert len(ds.train_x) == 10 and len(ds.test) == 15 and ds.val is ds.test
    with open(os.path.join(root, "imagenet", "split_fewshot", "shot_2-seed_1.json")) as f:
        assert set(json.load(f)) == {"format", "fingerprint", "train"}
    again = load(root, "ImageNet", shots=2, seed=1)
    assert [i.impath for i in again.train_x] == [i.impath for i in ds.train_x]
    base = load(root, "ImageNet", shots=2, seed=1, subsample="base")
    new = load(root, "ImageNet", shots=2, seed=1, subsample="new")
    assert base.classnames == ["tench", "goldfish", "great white shark"]
    assert new.classnames == ["tiger shark", "hammerhead shark"]
    assert sorted({i.label for i in new.test}) == [0, 1] and new.val is new.test


def test_imagenet_missing_class_folder_is_reported_not_relabelled(root):
    make_imagenet(root)
    shutil.rmtree(os.path.join(root, "imagenet", "images", "train", "n01484850"))
    with pytest.raises(UserError, match=r"missing in .*train: n01484850.*prepare_data.py imagenet"):
        load(root, "ImageNet")


def test_imagenet_flat_val_folder_is_explained(root):
    make_imagenet(root)
    val = os.path.join(root, "imagenet", "images", "val")
    for wnid in os.listdir(val):
        for f in os.listdir(os.path.join(val, wnid)):
            os.rename(os.path.join(val, wnid, f), os.path.join(val, f))
        os.rmdir(os.path.join(val, wnid))
    with pytest.raises(UserError, match="not sorted into wnid folders.*prepare_data.py imagenet --root"):
        load(root, "ImageNet")


def test_imagenetv2_folder_i_is_class_i(root):
    fake = make_imagenetv2(root)
    ds = load(root, "ImageNetV2", shots=4, subsample="base")  # both ignored by the variants
    assert ds.classnames == fake.classnames and ds.val is None
    assert ds.train_x is ds.test and len(ds.test) == 10
    assert all(os.path.basename(os.path.dirname(i.impath)) == str(i.label) for i in ds.test)
    assert not os.path.exists(os.path.join(root, "imagenetv2", "split_fewshot"))


def test_imagenet_sketch_labels_are_sorted_wnids(root):
    fake = make_imagenet_sketch(root)
    ds = load(root, "ImageNetSketch")
    assert ds.classnames == fake.classnames and len(ds.test) == 15
    os.rename(os.path.join(root, "imagenet-sketch", "images", "n01494475"),
              os.path.join(root, "imagenet-sketch", "n01494475"))
    with pytest.raises(UserError, match="1 class folder.*missing.*n01494475"):
        load(root, "ImageNetSketch")


@pytest.mark.parametrize("which", ["a", "r"])
def test_imagenet_a_r_are_200_way_over_sorted_wnids(root, which):
    fake = make_imagenet_ar(root, which)
    ds = load(root, fake.name)
    assert ds.classnames == fake.classnames and ds.num_classes == 200
    labels = [i.label for i in ds.test]
    assert labels == list(range(200))  # README.txt is not a class; one image per class here
    first = sorted(d for d in os.listdir(fake.image_dir(root)) if d != "README.txt")[0]
    assert os.path.basename(os.path.dirname(ds.test[0].impath)) == first


def test_imagenet_a_missing_folder_is_an_error(root):
    fake = make_imagenet_ar(root, "a")
    victim = sorted(d for d in os.listdir(fake.image_dir(root)) if d != "README.txt")[50]
    shutil.rmtree(os.path.join(fake.image_dir(root), victim))
    with pytest.raises(UserError, match="holds 199 class folders, expected 200.*prepare_data.py imagenet_a"):
        load(root, "ImageNetA")


def test_variant_without_classnames_names_the_file_and_command(root):
    make_imagenet_ar(root, "r")
    os.remove(os.path.join(root, "imagenet-rendition", "classnames.txt"))
    with pytest.raises(UserError, match=r"classnames.txt.*imagenet-rendition/classnames.txt.*"
                                        r"prepare_data.py imagenet_r --root"):
        load(root, "ImageNetR")
