"""Run folders and logs, torch-free: the markers a sweep writes, the result line train.py prints and
the tables read, and atomic small-file writes (one implementation for the engine and the tools), with
the fault-injection hook the tests use to kill a run at each step of a write."""
import contextlib
import errno
import json
import os
import re
import signal
import tempfile

DONE = "done.json"      # written by the sweep driver once a run has finished with a result
RECORD = "sweep.json"   # the sweep's record of how a run folder was made
LOCK = ".sweep.lock"     # held (flock) by the sweep driver while it runs a folder
COST_FILE = "cost.json"  # written by every run (engine/cost.py): what it cost; the sweep copies it into done.json
TMP_PREFIX = ".tmp-"     # atomic_write's temporary files; a kill can leave one behind

# fault injection for the tests: VLPROMPT_FAULT_AT="STEP:NAME[#N][=ERRNO]" kills the process (SIGKILL) the N-th
# time (default: first) a write reaches STEP for a file called NAME, or raises OSError(ERRNO) there instead.
# Steps: "written" (temporary file complete, before the rename), "renamed" (after it), "removed" (a superseded
# checkpoint deleted). E.g. "renamed:model.pth.tar-1" = killed between the first checkpoint and its pointer.
FAULT_ENV = "VLPROMPT_FAULT_AT"
_fault_hits = {}

# the evaluator's result block (Dassl's format, also what the official logs hold)
RESULT_HEADER = "=> result"
RESULT_RE = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
LOG_RE = re.compile(r"^log\.txt(-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})?$")


def format_result(total, correct, accuracy, error, macro_f1):
    """The lines of the result block that ``RESULT_RE`` reads back."""
    return (f"{RESULT_HEADER}\n* total: {total:,}\n* correct: {correct:,}\n* accuracy: {accuracy:.1f}%\n"
            f"* error: {error:.1f}%\n* macro_f1: {macro_f1:.1f}%")


def is_log_name(name):
    return bool(LOG_RE.match(name))


def fault_point(step, path):
    """Called at each step of the checkpoint protocol; does nothing unless ``FAULT_ENV`` names this step
    (tests kill or fail a run exactly there; monkeypatching this function works too)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    where, _, err = spec.partition("=")
    where, _, nth = where.partition("#")
    if where != f"{step}:{os.path.basename(path)}":
        return
    _fault_hits[where] = _fault_hits.get(where, 0) + 1
    if _fault_hits[where] != int(nth or 1):
        return
    if err:
        code = getattr(errno, err)
        raise OSError(code, os.strerror(code), path)
    os.kill(os.getpid(), signal.SIGKILL)


def _file_mode():
    """What open() would give a new file under the current umask (mkstemp's files are 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a kill never leaves
    a half-written file (at worst a ``.tmp-*`` file, which is not ``path``, removed when the next run starts).
    The file gets the permissions the umask gives (group-readable on a shared cluster); a failed write
    (disk full, read-only folder) raises OSError naming ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + os.path.basename(path) + "-", dir=folder)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault_point("written", path)
        os.replace(tmp, path)
        tmp = None
        fault_point("renamed", path)
    except OSError as e:
        _remove_quietly(tmp)
        if e.filename is None or (tmp and e.filename == tmp):
            e.filename = path
        raise
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path):
    if path:
        with contextlib.suppress(OSError):
            os.remove(path)


def remove_stale_temporaries(folder, depth=1):
    """Delete the ``.tmp-*`` files killed writes left in ``folder`` and its subfolders (``depth`` levels);
    only safe while holding the folder's run lock. Returns the removed paths."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if e.name.startswith(TMP_PREFIX) and e.is_file(follow_symlinks=False):
            _remove_quietly(e.path)
            removed.append(e.path)
        elif depth > 0 and e.is_dir(follow_symlinks=False):
            removed += remove_stale_temporaries(e.path, depth - 1)
    return removed


def write_text_atomic(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path):
    """The JSON in ``path``, or None if it is missing or unreadable (e.g. half-written by a killed run)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
