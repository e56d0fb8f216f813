"""Archives: extracted into a scratch folder, what a dataset needs moved (merged) into its folder."""
import fnmatch
import os
import shutil
import tarfile
import zipfile

from tqdm import tqdm

from engine.utils.tools import UserError

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


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
