"""Starting train.py for a run: a fresh ``python train.py ...`` per run (subprocess), or a fork of this
process after it imported train.py once (fork: saves the ~10 s start-up per run on CPU sweeps)."""
import os
import signal
import subprocess
import sys
import traceback

from tools import REPO

HELD_LOCKS = set()  # lock-file descriptors this process holds for running runs (closed in forked children)


class Process:
    """A started run: ``poll()`` -> None while it runs, then its exit status; ``kill()``."""

    def __init__(self, popen=None, pid=None):
        self.popen, self.pid = popen, pid if pid is not None else popen.pid
        self.returncode = None

    def poll(self):
        if self.popen is not None:
            return self.popen.poll()
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def launch(run, cmd_args, python, launcher, gpu, threads, verbose):
    """Start train.py with ``cmd_args``; its output goes to the run's sweep_output.txt unless ``verbose``."""
    log_path = os.path.join(run.out, "sweep_output.txt")
    env = {}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    if launcher == "subprocess":
        out = None if verbose else open(log_path, "ab")
        try:
            p = subprocess.Popen([*python, "train.py", *cmd_args], cwd=REPO, env={**os.environ, **env},
                                 stdout=out, stderr=subprocess.STDOUT if out else None)
        finally:
            if out:
                out.close()
        return Process(p)
    import train  # fork: torch and the registries are imported once, here, and inherited

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return Process(pid=pid)
    code = 1
    try:  # child
        for fd in HELD_LOCKS:
            os.close(fd)
        os.chdir(REPO)
        os.environ.update(env)
        if not verbose:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            train.run(cmd_args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
