"""Tee stdout into ``<output>/log.txt`` as Dassl does (an existing log is never overwritten)."""
import os
import sys
import time


class _Tee:
    def __init__(self, path):
        self.console = sys.stdout
        self.file = open(path, "w", buffering=1)  # line-buffered: a killed run keeps its log

    def write(self, msg):
        self.console.write(msg)
        self.file.write(msg)

    def flush(self):
        self.console.flush()
        self.file.flush()
        os.fsync(self.file.fileno())

    def isatty(self):
        return self.console.isatty()

    def close(self):
        self.file.close()

    def __getattr__(self, name):
        return getattr(self.console, name)


def setup_logger(output):
    if output is None:
        return None
    if output.endswith(".txt") or output.endswith(".log"):
        path = output
    else:
        path = os.path.join(output, "log.txt")
    if os.path.exists(path):
        path += time.strftime("-%Y-%m-%d-%H-%M-%S")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    restore_stdout()
    sys.stdout = _Tee(path)
    return path


def restore_stdout():
    """Undo a previous ``setup_logger`` (several runs in one process, e.g. tests)."""
    if isinstance(sys.stdout, _Tee):
        tee = sys.stdout
        sys.stdout = tee.console
        tee.close()
