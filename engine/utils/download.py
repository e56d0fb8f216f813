"""Resumable HTTP downloads with a progress bar and checksum check (CLIP weights, dataset archives).

Only ``_open_url`` touches the network, so tests replace that one function.
"""
import hashlib
import http.client
import os
import urllib.error
import urllib.request

from tqdm import tqdm

from .tools import UserError

CHUNK = 1 << 20


def _open_url(url, start=0):
    """Return (response, total_size or None, resumed) for ``url`` starting at byte ``start``."""
    req = urllib.request.Request(url, headers={"User-Agent": "vlprompt"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    resp = urllib.request.urlopen(req, timeout=60)
    resumed = start > 0 and getattr(resp, "status", 200) == 206
    length = resp.headers.get("Content-Length")
    total = int(length) + (start if resumed else 0) if length is not None else None
    return resp, total, resumed


def file_digest(path, algorithm="sha256"):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256sum(path):
    return file_digest(path, "sha256")


def download_url(url, dst, sha256=None, size=None, desc=None, md5=None):
    """Download ``url`` to ``dst``; a partial ``dst + '.part'`` from an interrupted run is resumed.

    An existing ``dst`` that passes the checks is kept (idempotent). A checksum or size mismatch
    deletes the bad file and raises, so the next attempt starts clean. ``md5`` is for hosts that
    only publish MD5 sums (the dataset archives).
    """
    checks = dict(sha256=sha256, size=size, md5=md5)
    if os.path.isfile(dst) and _verified(dst, remove=False, **checks):
        return dst
    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    part = dst + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        resp, total, resumed = _open_url(url, start)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # range past the end: the previous run got every byte but stopped before the rename
            return _finish(url, part, dst, checks)
        raise UserError(f"cannot download {url}: {e} (place the file at {dst} by hand)") from e
    except OSError as e:
        raise UserError(f"cannot download {url}: {e} (no network? place the file at {dst} by hand)") from e
    if not resumed:
        start = 0
    try:
        with resp, open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=desc or os.path.basename(dst)
        ) as bar:
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block)
                bar.update(len(block))
    except (OSError, http.client.HTTPException) as e:  # connection lost: the .part file keeps what arrived
        raise UserError(f"download of {url} was interrupted at {os.path.getsize(part):,} bytes ({e}); "
                        "run the same command again to resume") from e
    if total is not None and os.path.getsize(part) != total:
        raise UserError(f"download of {url} stopped at {os.path.getsize(part)} of {total} bytes; "
                        "run the same command again to resume")
    return _finish(url, part, dst, checks)


def _finish(url, part, dst, checks):
    if not _verified(part, remove=True, **checks):
        raise UserError(f"{url} failed its checksum/size check and was deleted; run the command again "
                        "or fetch the file by hand")
    os.replace(part, dst)
    return dst


def _verified(path, sha256=None, size=None, md5=None, remove=False):
    ok = ((size is None or os.path.getsize(path) == size)
          and (sha256 is None or file_digest(path, "sha256") == sha256)
          and (md5 is None or file_digest(path, "md5") == md5))
    if not ok and remove:
        os.remove(path)
    return ok
