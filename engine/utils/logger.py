"""Tee stdout and stderr into ``<output>/log.txt`` as Dassl does for stdout (an existing log is never
overwritten); stderr goes there too, so a failed run's log holds its warnings, tracebacks and error line."""
import os
import sys
import time


class _Tee:
    def __init__(self, file, console):
        self.console = console
        self.file = file
        self.file_error = None  # the OSError that stopped writes to the log (disk full): the console goes on

    def write(self, msg):
        self.console.write(msg)
        self._to_file(self.file.write, msg)

    def _to_file(self, op, *args):
        if self.file_error is None and not self.file.closed:
            try:
                op(*args)
            except OSError as e:
                self.file_error = e

    def flush(self):
        self.console.flush()
        self._to_file(self.file.flush)
        if self.file_error is None and not self.file.closed:
            self._to_file(os.fsync, self.file.fileno())

    def isatty(self):
        return self.console.isatty()

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass

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
    file = open(path, "w", buffering=1)  # line-buffered: a killed run keeps its log
    sys.stdout = _Tee(file, sys.stdout)
    sys.stderr = _Tee(file, sys.stderr)
    return path


def console_stderr():
    """The terminal's stderr, for progress bars (never written into the log)."""
    return sys.stderr.console if isinstance(sys.stderr, _Tee) else sys.stderr


def write_to_log(line):
    """Write ``line`` into the current log only (not the console); False if there is no log."""
    tee = sys.stdout if isinstance(sys.stdout, _Tee) else None
    if tee is None:
        return False
    tee._to_file(tee.file.write, line.rstrip("\n") + "\n")
    tee.flush()
    return True


def restore_stdout():
    """Undo a previous ``setup_logger`` (several runs in one process, e.g. tests)."""
    if isinstance(sys.stderr, _Tee):
        sys.stderr.flush()
        sys.stderr = sys.stderr.console
    if isinstance(sys.stdout, _Tee):
        tee = sys.stdout
        sys.stdout = tee.console
        tee.flush()
        tee.close()
