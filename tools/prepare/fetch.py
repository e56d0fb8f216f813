"""Fetching one file from its sources (URL, Google Drive, a local copy, the mirror), checked against the
published MD5 and against the web pages hosts send instead of files; and an item (a file or an archive's
content) in place."""
import os
import re
import shutil

from engine.utils import download  # module access, so tests can replace download._open_url
from engine.utils.io import read_json
from engine.utils.tools import UserError
from meta.runs import atomic_write

from .archives import extract, take_from
from .sources import DRIVE_VIEW


def gdrive_download(file_id, dst):
    """Fetch a Google Drive file with gdown (resumable). Tests replace this function."""
    import gdown

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        gdown.download(id=file_id, output=dst, quiet=False, resume=True)
    except Exception as e:  # gdown raises its own types for quota pages, permissions, network errors
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"Google Drive file {file_id}: {first_line}") from e
    if not os.path.isfile(dst):
        raise UserError(f"Google Drive file {file_id} was not downloaded")


class Context:
    def __init__(self, root, download_dir=None, mirror=None, keep_archives=False, val_labels=None, with_raw=False):
        self.with_raw = with_raw
        self.root = os.path.abspath(os.path.expanduser(root))
        self.download_dir = os.path.abspath(os.path.expanduser(download_dir or os.path.join(self.root, "downloads")))
        self.scratch = os.path.join(self.root, ".prepare-tmp")
        self.mirror = mirror
        self.keep_archives = keep_archives
        self.val_labels = val_labels


def _looks_like_web_page(path):
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _valid_download(path, name):
    """Reject what Google Drive and others send instead of the file (quota or login pages)."""
    if _looks_like_web_page(path):
        os.remove(path)
        raise UserError("got a web page instead of the file (Google Drive quota exceeded or login required?)")
    if name.endswith(".json"):
        try:
            read_json(path)
        except (ValueError, UnicodeDecodeError) as e:
            os.remove(path)
            raise UserError(f"the downloaded file is not valid JSON ({e})") from e


def _copy_local(src, dst):
    if not os.path.isfile(src):
        raise UserError(f"{src} does not exist")
    with open(src, "rb") as f, atomic_write(dst) as out:
        shutil.copyfileobj(f, out)


def md5_ok(path, md5):
    return download.file_digest(path, "md5") == md5


def _usable(path, item):
    """Whether a file already at ``path`` (fetched before, or put there by hand) can be kept."""
    try:
        _valid_download(path, item["name"])  # deletes a web page or broken JSON
    except UserError:
        return False
    md5s = [md5 for _, md5 in item["sources"]]
    # Only when every source publishes an MD5 can a file from elsewhere be told apart.
    if md5s and None not in md5s and not any(md5_ok(path, md5) for md5 in md5s):
        print(f"  {path} does not match the published MD5; fetching it again")
        return False
    return True


def fetch_file(item, dst, ctx):
    """Put ``item`` at ``dst`` from its first working source, then the mirror; raise with what to do by hand."""
    if os.path.isfile(dst) and _usable(dst, item):
        return dst
    sources = list(item["sources"])
    if ctx.mirror:
        sources.append((ctx.mirror.rstrip("/") + "/" + item["name"], None))
    errors = []
    for location, md5 in sources:
        try:
            if location.startswith("gdrive:"):
                if os.path.exists(dst):
                    os.remove(dst)  # gdown would keep a file that is already there
                gdrive_download(location[len("gdrive:"):], dst)
                if md5 and not md5_ok(dst, md5):
                    os.remove(dst)
                    raise UserError("failed its MD5 check and was deleted")
            elif location.startswith("copy:"):
                _copy_local(os.path.join(ctx.root, location[len("copy:"):]), dst)
            elif re.match(r"^[a-z]+://", location):
                download.download_url(location, dst, md5=md5, desc=item["name"])
            else:  # a mirror that is a local folder
                _copy_local(location, dst)
            _valid_download(dst, item["name"])
            return dst
        except (UserError, OSError) as e:
            errors.append(f"{location}: {e}")
            print(f"  could not fetch {item['name']} from {location}: {e}")
    by_hand = [DRIVE_VIEW.format(loc[len("gdrive:"):]) if loc.startswith("gdrive:") else loc
               for loc, _ in item["sources"] if not loc.startswith("copy:")]
    raise UserError(f"could not fetch {item['name']} ({len(errors)} source(s) failed). Download it by hand from "
                    f"{' or '.join(by_hand)} and put it at {dst}, then run the command again")


def outputs(item):
    """Paths (relative to the dataset folder) whose presence means ``item`` is in place."""
    if "creates" in item:
        return item["creates"]
    if "take" in item:
        return [dest for _, dest in item["take"]]
    return [item["name"]]


def item_done(item, dataset_dir):
    for rel in outputs(item):
        path = os.path.join(dataset_dir, rel)
        if not os.path.exists(path):
            return False
        if rel.endswith(".json"):
            try:
                read_json(path)
            except (ValueError, UnicodeDecodeError):
                return False
    return True


def fetch_item(item, dataset_dir, ctx):
    if "take" not in item:
        fetch_file(item, os.path.join(dataset_dir, item["name"]), ctx)
        return
    archive = fetch_file(item, os.path.join(ctx.download_dir, item["name"]), ctx)
    staging = os.path.join(ctx.scratch, item["name"])
    shutil.rmtree(staging, ignore_errors=True)  # left over by an interrupted run
    extract(archive, staging)
    take_from(staging, item["take"], dataset_dir, item["name"])
    shutil.rmtree(staging, ignore_errors=True)
    if not ctx.keep_archives:
        os.remove(archive)
