"""tools/prepare_data.py with the network replaced by local files (engine.utils.download._open_url and
tools.prepare.fetch.gdrive_download)."""
import copy
import hashlib
import io
import json
import os
import tarfile
import zipfile

import numpy as np
import pytest
from scipy.io import savemat

import engine.utils.download as download
from engine.utils.tools import UserError
from tools import prepare_data
from tools.prepare import fetch, imagenet, sources

from .fakes import (IMAGENET_CLASSES, JPEG, make_caltech101, make_eurosat, make_fgvc_aircraft, make_food101,
                    make_imagenet_ar, write_classnames, write_image)
from .loading import load


# ----------------------------------------------------------------------------------------------
# fake hosts

def tar_bytes(members, mode="w:gz"):
    """``members``: {archive name: bytes or a folder to add recursively}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, content in members.items():
            if isinstance(content, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
            else:
                tf.add(content, arcname=name)
    return buf.getvalue()


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in members.items():
            if isinstance(content, bytes):
                zf.writestr(name, content)
            else:
                for folder, _, files in os.walk(content):
                    for f in files:
                        path = os.path.join(folder, f)
                        zf.write(path, os.path.join(name, os.path.relpath(path, content)))
    return buf.getvalue()


def md5(data):
    return hashlib.md5(data).hexdigest()


class Web:
    """Serves bytes for URLs and Drive ids; records every request; can cut a download short."""

    def __init__(self, monkeypatch):
        self.urls, self.drive, self.calls = {}, {}, []
        self.cut_after = None  # bytes to deliver before the connection drops (once)
        monkeypatch.setattr(download, "_open_url", self.open_url)
        monkeypatch.setattr(fetch, "gdrive_download", self.gdrive)

    def open_url(self, url, start=0):
        self.calls.append((url, start))
        if url not in self.urls:
            raise OSError(f"[Errno 111] Connection refused: {url}")
        data = self.urls[url]
        body = data[start:]
        if self.cut_after is not None:
            body, self.cut_after = _Dropping(body[: self.cut_after]), None
        else:
            body = io.BytesIO(body)
        return body, len(data), start > 0

    def gdrive(self, file_id, dst):
        self.calls.append(("gdrive", file_id))
        if file_id not in self.drive:
            raise UserError(f"Google Drive file {file_id}: Too many users have viewed or downloaded this file")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(self.drive[file_id])


class _Dropping(io.BytesIO):
    def read(self, n=-1):
        data = super().read(n)
        if not data:
            raise ConnectionResetError("connection reset by peer")
        return data


def patched(monkeypatch, key, **md5s):
    """Replace the published MD5s of ``key``'s files by those of the fake archives."""
    spec = copy.deepcopy(sources.SOURCES[key])
    for item in spec["files"]:
        if item["name"] in md5s:
            item["sources"] = [(loc, md5s[item["name"]]) for loc, _ in item["sources"]]
    monkeypatch.setitem(sources.SOURCES, key, spec)
    return spec


def url_of(key, name, index=0):
    item = next(i for i in sources.SOURCES[key]["files"] if i["name"] == name)
    return item["sources"][index][0]


def drive_id(key, name):
    return url_of(key, name)[len("gdrive:"):]


def snapshot(folder):
    return sorted((os.path.relpath(os.path.join(d, f), folder), os.stat(os.path.join(d, f)).st_mtime_ns)
                  for d, _, files in os.walk(folder) for f in files)


@pytest.fixture
def web(monkeypatch):
    return Web(monkeypatch)


@pytest.fixture
def source(tmp_path):
    """Where the fake hosts' content is built."""
    path = tmp_path / "src"
    path.mkdir()
    return str(path)


def caltech_host(web, monkeypatch, source):
    """caltech-101.zip holding 101_ObjectCategories.tar.gz and Annotations.tar, as on data.caltech.edu."""
    fake = make_caltech101(source)
    inner = tar_bytes({"101_ObjectCategories": fake.image_dir(source)})
    archive = zip_bytes({"caltech-101/101_ObjectCategories.tar.gz": inner,
                         "caltech-101/Annotations.tar": tar_bytes({"Annotations/x.mat": b"0"}, "w"),
                         "caltech-101/show_annotation.m": b"%"})
    patched(monkeypatch, "caltech101", **{"caltech-101.zip": md5(archive)})
    web.urls[url_of("caltech101", "caltech-101.zip")] = archive
    web.drive[drive_id("caltech101", fake.split_file)] = json.dumps(fake.split).encode()
    return fake, archive


# ----------------------------------------------------------------------------------------------

def test_download_extract_reorganise_then_nothing_to_do(root, web, monkeypatch, source, capsys):
    fake, _ = caltech_host(web, monkeypatch, source)
    assert prepare_data.main(["caltech101", "--root", root]) == 0
    assert sorted(os.listdir(os.path.join(root, "caltech-101"))) == ["101_ObjectCategories", fake.split_file]
    assert not os.listdir(os.path.join(root, "downloads"))  # archive removed after extraction
    assert not os.path.exists(os.path.join(root, ".prepare-tmp"))
    ds = load(root, "Caltech101")
    assert ds.classnames == fake.classnames and len(ds.test) == fake.sizes[2]

    # idempotent: a second run fetches nothing and changes nothing
    before = snapshot(root)
    web.calls.clear()
    capsys.readouterr()
    assert prepare_data.main(["caltech101", "--root", root]) == 0
    assert web.calls == [] and snapshot(root) == before
    assert "all 48 listed images are present" in capsys.readouterr().out


def test_checksum_failure_deletes_the_download_and_stops(root, web, source, capsys):
    url = url_of("oxford_pets", "images.tar.gz")  # the real MD5 stays in the table
    web.urls[url] = tar_bytes({"images/Abyssinian_1.jpg": JPEG})
    assert prepare_data.main(["oxford_pets", "--root", root]) == 1
    out = capsys.readouterr().out
    assert "failed its checksum/size check and was deleted" in out
    assert "oxford_pets: FAILED" in out and "put it at " + os.path.join(root, "downloads", "images.tar.gz") in out
    assert not os.path.exists(os.path.join(root, "downloads", "images.tar.gz.part"))
    assert not os.path.exists(os.path.join(root, "downloads", "images.tar.gz"))
    assert not os.path.exists(os.path.join(root, "oxford_pets", "images"))


def test_interrupted_download_resumes(root, web, monkeypatch, source, capsys):
    fake, archive = caltech_host(web, monkeypatch, source)
    web.cut_after = 1000
    assert prepare_data.main(["caltech101", "--root", root]) == 1
    assert "interrupted at 1,000 bytes" in capsys.readouterr().out
    part = os.path.join(root, "downloads", "caltech-101.zip.part")
    assert os.path.getsize(part) == 1000
    web.calls.clear()
    assert prepare_data.main(["caltech101", "--root", root]) == 0
    assert (url_of("caltech101", "caltech-101.zip"), 1000) in web.calls  # asked for the rest only
    assert load(root, "Caltech101").classnames == fake.classnames


def test_keep_archives_and_a_file_put_there_by_hand(root, web, monkeypatch, source):
    fake, archive = caltech_host(web, monkeypatch, source)
    os.makedirs(os.path.join(root, "downloads"))
    with open(os.path.join(root, "downloads", "caltech-101.zip"), "wb") as f:
        f.write(archive)  # e.g. fetched in a browser
    del web.urls[url_of("caltech101", "caltech-101.zip")]
    assert prepare_data.main(["caltech101", "--root", root, "--keep-archives"]) == 0
    assert os.path.isfile(os.path.join(root, "downloads", "caltech-101.zip"))
    assert load(root, "Caltech101").classnames == fake.classnames


def test_split_file_from_mirror_when_drive_fails(root, web, monkeypatch, source, tmp_path, capsys):
    fake, _ = caltech_host(web, monkeypatch, source)
    web.drive[drive_id("caltech101", fake.split_file)] = b"<!DOCTYPE html><html>quota exceeded</html>"
    assert prepare_data.main(["caltech101", "--root", root]) == 1
    out = capsys.readouterr().out
    assert "got a web page instead of the file" in out
    assert "https://drive.google.com/file/d/1hyarUivQE36mY6jSomru6Fjd-JzwcCzN/view" in out
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / fake.split_file).write_text(json.dumps(fake.split))
    assert prepare_data.main(["caltech101", "--root", root, "--mirror", str(mirror)]) == 0
    assert load(root, "Caltech101").classnames == fake.classnames


def test_layout_changes_fgvc_food_eurosat(root, web, monkeypatch, source):
    # FGVC: only data/ of fgvc-aircraft-2013b becomes the dataset folder
    make_fgvc_aircraft(source)
    fgvc = tar_bytes({"fgvc-aircraft-2013b/data": os.path.join(source, "fgvc_aircraft"),
                      "fgvc-aircraft-2013b/evaluation.m": b"%", "fgvc-aircraft-2013b/README.html": b"<p>"})
    web.urls[url_of("fgvc_aircraft", "fgvc-aircraft-2013b.tar.gz")] = fgvc
    # Food-101: the archive's food-101/ folder is the dataset folder
    food = make_food101(source)
    food_tar = tar_bytes({"food-101": food.dataset_dir(source)})
    patched(monkeypatch, "food101", **{"food-101.tar.gz": md5(food_tar)})
    web.urls[url_of("food101", "food-101.tar.gz")] = food_tar
    web.drive[drive_id("food101", food.split_file)] = json.dumps(food.split).encode()
    # EuroSAT: first two hosts down, the Zenodo copy unpacks to EuroSAT_RGB/
    euro = make_eurosat(source)
    web.urls[url_of("eurosat", "EuroSAT.zip", 2)] = zip_bytes({"EuroSAT_RGB": euro.image_dir(source)})
    web.drive[drive_id("eurosat", euro.split_file)] = json.dumps(euro.split).encode()

    assert prepare_data.main(["fgvc_aircraft", "--root", root]) == 0
    assert prepare_data.main(["food101", "--root", root]) == 0
    assert prepare_data.main(["eurosat", "--root", root]) == 0
    assert sorted(os.listdir(os.path.join(root, "fgvc_aircraft")))[:2] == ["images", "images_box.txt"]
    assert {"images", "meta", "README.txt"} <= set(os.listdir(os.path.join(root, "food-101")))
    assert load(root, "FGVCAircraft").num_classes == 5
    assert load(root, "Food101").classnames == food.classnames
    assert load(root, "EuroSAT").classnames == euro.classnames


def test_variant_takes_classnames_from_imagenet(root, web, monkeypatch, source):
    fake = make_imagenet_ar(source, "a")
    archive = tar_bytes({"imagenet-a": fake.image_dir(source)}, "w")
    patched(monkeypatch, "imagenet_a", **{"imagenet-a.tar": md5(archive)})
    web.urls[url_of("imagenet_a", "imagenet-a.tar")] = archive
    os.makedirs(os.path.join(root, "imagenet"))
    os.replace(os.path.join(fake.dataset_dir(source), "classnames.txt"),
               os.path.join(root, "imagenet", "classnames.txt"))
    assert prepare_data.main(["imagenet_a", "--root", root]) == 0
    assert not any(call[0] == "gdrive" for call in web.calls)
    assert load(root, "ImageNetA").classnames == fake.classnames


# ----------------------------------------------------------------------------------------------
# ImageNet

def imagenet_archives(folder):
    """Fake ILSVRC2012 train/val/devkit archives for the classes of fakes.IMAGENET_CLASSES."""
    train = tar_bytes({f"{wnid}.tar": tar_bytes({f"{wnid}_{i}.JPEG": JPEG for i in range(3)}, "w")
                       for wnid, _ in IMAGENET_CLASSES}, "w")
    truth = [(i % 5) + 1 for i in range(10)]  # ILSVRC2012_ID of val image i+1
    val = tar_bytes({f"ILSVRC2012_val_{i:08d}.JPEG": JPEG for i in range(1, 11)}, "w")
    synsets = np.zeros((7, 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    for i, (wnid, name) in enumerate(IMAGENET_CLASSES):
        synsets[i, 0] = (np.array([[i + 1]]), wnid, name, np.array([[0]]))
    synsets[5, 0] = (np.array([[1001]]), "n00001740", "entity", np.array([[3]]))  # not a leaf class
    synsets[6, 0] = (np.array([[1002]]), "n00002684", "object", np.array([[2]]))
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    devkit = tar_bytes({"ILSVRC2012_devkit_t12/data/meta.mat": meta.getvalue(),
                        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt":
                            "".join(f"{t}\n" for t in truth).encode()})
    archives = {"ILSVRC2012_img_train.tar": train, "ILSVRC2012_img_val.tar": val,
                "ILSVRC2012_devkit_t12.tar.gz": devkit}
    os.makedirs(folder, exist_ok=True)
    for name, data in archives.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return {name: md5(data) for name, data in archives.items()}, truth


def test_imagenet_says_what_to_download_then_finishes_the_layout(root, web, monkeypatch, capsys):
    classnames = io.StringIO("".join(f"{w} {n}\n" for w, n in IMAGENET_CLASSES)).getvalue().encode()
    web.drive[sources.IMAGENET_CLASSNAMES[len("gdrive:"):]] = classnames
    assert prepare_data.main(["imagenet", "--root", root]) == 1
    out = capsys.readouterr().out
    downloads = os.path.join(root, "downloads")
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        assert name in out
    assert f"into {downloads}/" in out and "image-net.org" in out and "needs a manual step" in out

    md5s, truth = imagenet_archives(downloads)
    monkeypatch.setattr(imagenet, "IMAGENET_ARCHIVES",
                        [(n, size, md5s[n]) for n, size, _ in imagenet.IMAGENET_ARCHIVES])
    assert prepare_data.main(["imagenet", "--root", root]) == 0
    ds = load(root, "ImageNet")
    assert ds.classnames == [n for _, n in IMAGENET_CLASSES] and len(ds.train_x) == 15 and len(ds.test) == 10
    for item in ds.test:  # each val image sits in the class the ground truth gives it
        index = int(os.path.basename(item.impath)[15:23])
        assert item.label == truth[index - 1] - 1
    before = snapshot(os.path.join(root, "imagenet", "images"))
    assert prepare_data.main(["imagenet", "--root", root]) == 0
    assert snapshot(os.path.join(root, "imagenet", "images")) == before


def test_imagenet_flat_val_sorted_with_a_user_mapping(root, web, tmp_path):
    base = os.path.join(root, "imagenet")
    write_classnames(os.path.join(base, "classnames.txt"))
    lines = ["ImageId,PredictionString"]
    for i, (wnid, _) in enumerate(IMAGENET_CLASSES):
        write_image(os.path.join(base, "images", "train", wnid, f"{wnid}_1.JPEG"))
        write_image(os.path.join(base, "images", "val", f"ILSVRC2012_val_{i + 1:08d}.JPEG"))
        lines.append(f"ILSVRC2012_val_{i + 1:08d},{wnid} 1 2 30 40 {wnid} 5 6 7 8")
    mapping = tmp_path / "LOC_val_solution.csv"
    mapping.write_text("\n".join(lines) + "\n")
    assert prepare_data.main(["imagenet", "--root", root, "--val-labels", str(mapping)]) == 0
    ds = load(root, "ImageNet")
    assert [os.path.basename(i.impath) for i in ds.test] == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 6)]
    assert [i.label for i in ds.test] == list(range(5))


def test_stanford_cars_from_a_copy_with_nested_folders(root, web, source, capsys):
    from .fakes import make_stanford_cars

    fake = make_stanford_cars(source)
    assert prepare_data.main(["stanford_cars", "--root", root]) == 1  # official hosts are gone
    assert "Stanford hosts have been offline" in capsys.readouterr().out
    downloads = os.path.join(root, "downloads")
    for folder in ("cars_train", "cars_test"):  # a Kaggle-style copy: cars_train/cars_train/00001.jpg
        with open(os.path.join(downloads, folder + ".tgz"), "wb") as f:
            f.write(tar_bytes({f"{folder}/{folder}": os.path.join(fake.dataset_dir(source), folder)}))
    web.drive[drive_id("stanford_cars", fake.split_file)] = json.dumps(fake.split).encode()
    web.calls.clear()
    assert prepare_data.main(["stanford_cars", "--root", root]) == 0
    assert not any("devkit" in str(call) for call in web.calls)  # raw annotations: not needed with the split
    ds = load(root, "StanfordCars")
    assert ds.classnames == fake.classnames and len(ds.test) == 8


def test_raw_annotations_fetched_when_the_split_file_cannot_be(root, web, monkeypatch, source, capsys):
    from .fakes import make_oxford_pets

    fake = make_oxford_pets(source)
    images = tar_bytes({"images": fake.image_dir(source)})
    annotations = tar_bytes({"annotations": os.path.join(fake.dataset_dir(source), "annotations")})
    patched(monkeypatch, "oxford_pets", **{"images.tar.gz": md5(images), "annotations.tar.gz": md5(annotations)})
    web.urls[url_of("oxford_pets", "images.tar.gz")] = images
    web.urls[url_of("oxford_pets", "annotations.tar.gz")] = annotations
    assert prepare_data.main(["oxford_pets", "--root", root]) == 1  # Drive refuses the split file
    assert "split_zhou_OxfordPets.json" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(root, "oxford_pets", "annotations", "trainval.txt"))
    ds = load(root, "OxfordPets")  # derives a split (with a note) from the annotations
    assert ds.classnames == fake.classnames and len(ds.train_x) == fake.raw_sizes[0]


def test_all_goes_on_after_failures_and_summarises(root, web, capsys):
    assert prepare_data.main(["all", "--root", root]) == 1
    out = capsys.readouterr().out
    summary = out[out.index("Summary"):].splitlines()[1:]
    assert [line.split()[0] for line in summary] == list(sources.SOURCES)
    assert "imagenet         needs a manual step" in out or "imagenet         FAILED" in out
