"""Run folders and logs, torch-free: the markers a sweep writes, the result line train.py prints and
the tables read, and atomic small-file writes (one implementation for the engine and the tools)."""
import contextlib
import json
import os
import re
import tempfile

DONE = "done.json"      # written by the sweep driver once a run has finished with a result
RECORD = "sweep.json"   # the sweep's record of how a run folder was made
LOCK = ".sweep.lock"
COST_FILE = "cost.json"  # written by every run (engine/cost.py): what it cost; the sweep copies it into done.json

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


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a kill never leaves
    a half-written file (at worst a ``.tmp-*`` file, which is not ``path``)."""
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
