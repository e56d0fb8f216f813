"""File helpers: Dassl's names, plus atomic writes so a kill never leaves a half-written file."""
import contextlib
import json
import os
import tempfile

from PIL import Image


def mkdir_if_missing(path):
    os.makedirs(path, exist_ok=True)


def check_isfile(path):
    return os.path.isfile(path)


def listdir_nohidden(path, sort=False):
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    return sorted(items) if sort else items


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(obj, path):
    """JSON in Dassl's formatting (4-space indent, ', ' / ': ' separators), written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=4, separators=(", ", ": "))


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def read_image(path):
    """PIL RGB image; an unreadable file raises an error that names it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt files
        raise OSError(f"cannot read image {path}: {e}") from e
