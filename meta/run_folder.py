"""A run folder belongs to one run (torch-free): the exclusive lock train.py holds on it for its whole life,
and the run record (``run.json``) holding the signature of the run that made it, compared key by key with
the signature of a run that wants to resume or write into it."""
import datetime
import json
import os
import socket
import subprocess
import time

from .errors import UserError
from .runs import DONE, RESULT_HEADER, is_log_name, read_json, write_json_atomic

RUN_LOCK = ".train.lock"   # held by train.py (pid, host) while it writes the folder
RUN_RECORD = "run.json"    # the signature of the run that made the folder
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the command-line ways out of a refused folder, named in every refusal
WAYS_OUT = ("choose another --output-dir, or pass --overwrite (start this run afresh there, deleting the "
            "previous run's checkpoints and logits) or --resume-anyway (continue from its checkpoints with the "
            "new settings)")
_UNPARSED_GRACE = 10.0  # seconds a lock file may stay empty while its owner writes it


class FolderBusy(UserError):
    """Another live process holds the folder's lock."""


def _process_start(pid):
    """(state, start time in clock ticks) of a process from /proc, or None if it does not exist; on systems
    without /proc, ("?", None) when os.kill says it exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?", None


def _holder_alive(info):
    """A lock's holder is alive unless it ran on this host and its process is gone (or is another process
    that reused the pid); a lock from another host cannot be checked and counts as alive."""
    if info.get("host") != socket.gethostname():
        return True
    proc = _process_start(int(info.get("pid", -1)))
    if proc is None or proc[0] in ("Z", "X"):
        return False
    return info.get("start") is None or proc[1] is None or proc[1] == info["start"]


class RunLock:
    """Exclusive lock on a run folder: ``<folder>/.train.lock`` created with O_EXCL, holding the pid, host and
    process start time of its owner. A lock whose process is gone (same host) is stale and taken over."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, RUN_LOCK)
        self.info = None

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        proc = _process_start(os.getpid()) or ("?", None)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "start": proc[1],
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
                f.flush()
                os.fsync(f.fileno())
            self.info = info
            return self
        raise FolderBusy(f"cannot take the lock {self.path}: it keeps changing hands; another train.py is "
                         "starting in this folder")

    def _take_over_if_stale(self):
        holder = lock_holder(self.folder)
        if holder is not None:
            raise FolderBusy(f"{self.folder} is in use by another train.py (pid {holder.get('pid')} on "
                             f"{holder.get('host')}, since {holder.get('started')}): wait for it to end or "
                             f"choose another --output-dir (if that process is gone, delete {self.path})")
        # stale: move it aside under a name of our own, then check we moved the stale lock and not a new one
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read_lock(aside)
        if moved is not None and _holder_alive(moved):  # a live owner took it over meanwhile: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        os.remove(aside)

    def release(self):
        """Remove the lock if it is still ours (never another process's)."""
        if self.info is None:
            return
        current = _read_lock(self.path)
        if current is not None and current.get("pid") == self.info["pid"] and current.get("host") == self.info["host"]:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        self.info = None


def _read_lock(path):
    """The lock's content; {} while its owner is still writing it; None if missing or unreadable for long."""
    try:
        with open(path) as f:
            text = f.read()
        return json.loads(text)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        try:
            young = time.time() - os.path.getmtime(path) < _UNPARSED_GRACE
        except OSError:
            return None
        return {"pid": -1, "host": "?", "started": "just now"} if young else None


def lock_holder(folder):
    """The live holder of a folder's run lock ({pid, host, started}), or None (no lock, or a stale one)."""
    info = _read_lock(os.path.join(folder, RUN_LOCK))
    if info is None:
        return None
    if info.get("pid") == -1:  # being written
        return info
    return info if _holder_alive(info) else None


def code_version():
    """The git commit of the code (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# ----- run records -----

def read_record(folder):
    rec = read_json(os.path.join(folder, RUN_RECORD))
    return rec if isinstance(rec, dict) and isinstance(rec.get("signature"), dict) else None


def write_record(folder, signature, digest, note=None, accepted=()):
    """``accepted``: hashes of earlier signatures whose checkpoints this run continued (--resume-anyway)."""
    data = {"signature": signature, "hash": digest, "accepted": list(accepted),
            "written": datetime.datetime.now().isoformat(timespec="seconds")}
    if note:
        data["note"] = note
    write_json_atomic(os.path.join(folder, RUN_RECORD), data)


def _short(value, width=40):
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


def signature_differences(old, new, keys=None):
    """["KEY old -> new", ...] for the keys (default: all) whose values differ; the config is compared per key."""
    diffs = []
    for key in keys or sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k} {_short(a.get(k))} -> {_short(b.get(k))}" for k in sorted(set(a) | set(b))
                      if a.get(k) != b.get(k)]
        elif a != b:
            diffs.append(f"{key} {_short(a)} -> {_short(b)}")
    return diffs


def mismatch_message(folder, diffs):
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    return f"{folder} holds a run made with other settings ({shown}): {WAYS_OUT}"


def has_run_state(folder, model_names=None):
    """Whether the folder holds something of a previous run worth protecting: checkpoints, logits, the
    sweep's done marker or a log with a result block."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return False
    for name in entries:
        path = os.path.join(folder, name)
        if name == DONE or (name.startswith("logits_") and name.endswith(".pt")):
            return True
        if is_log_name(name) and _log_has_result(path):
            return True
        if os.path.isdir(path) and (model_names is None or name in model_names):
            if any(f.startswith("model.pth.tar-") or f == "model-best.pth.tar" for f in _listdir(path)):
                return True
    return False


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _log_has_result(path):
    try:
        with open(path, errors="replace") as f:
            return any(line.strip() == RESULT_HEADER for line in f)
    except OSError:
        return False
