"""File helpers: Dassl's names, plus atomic writes so a kill never leaves a half-written file."""
import json
import os

from PIL import Image

from meta.runs import atomic_write  # noqa: F401  (one implementation, torch-free)


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


def read_image(path):
    """PIL RGB image; an unreadable file raises an error that names it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt files
        raise OSError(f"cannot read image {path}: {e}") from e
