"""What a sweep writes into a run folder and reads back: the signature of the command that made it,
``sweep.json`` (command, versions, host, attempts), ``command.sh``, and after a successful run ``config.yaml``
and the ``done.json`` marker. Markers and atomic writes come from meta.runs."""
import datetime
import os
import platform
import shlex
import socket
import subprocess
import time

from meta.runs import COST_FILE, DONE, RECORD, is_log_name, read_json, write_json_atomic, write_text_atomic
from tools.results.logs import read_log
from tools import REPO

CHECKPOINT_PREFIX = "model.pth.tar-"


def is_done(run):
    return read_json(os.path.join(run.out, DONE)) is not None


def state(run):
    """'done', 'partial (epoch N)', 'started' or 'new'."""
    if is_done(run):
        return "done"
    if not os.path.isdir(run.out):
        return "new"
    epoch = last_checkpoint_epoch(run.out)
    return f"partial (epoch {epoch})" if epoch else "started"


def last_checkpoint_epoch(folder):
    """The epoch of the checkpoint a training folder's ``checkpoint`` pointer names (None if none)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    epochs = []
    for name in names:
        pointer = os.path.join(folder, name, "checkpoint")
        if os.path.isfile(pointer):
            with open(pointer) as f:
                fname = f.readline().strip()
            if fname.startswith(CHECKPOINT_PREFIX) and fname[len(CHECKPOINT_PREFIX):].isdigit():
                epochs.append(int(fname[len(CHECKPOINT_PREFIX):]))
    return min(epochs) if epochs else None


def signature(run):
    """The command with the data and output roots abstracted and without the load epoch: a rerun into the
    same folder must have the same signature."""
    sig = run.argv(load_epoch=False)
    sig[sig.index("--root") + 1] = "{DATA}"
    return [a.replace(run.out_root, "{OUTPUT}") for a in sig] if run.out_root else sig


def check_signature(run):
    """A folder made by another command must not be resumed or counted (different settings)."""
    rec = read_json(os.path.join(run.out, RECORD))
    if rec is None or "signature" not in rec:
        return None
    old, new = rec["signature"], signature(run)
    if old != new:
        diff = [f"{a!r} -> {b!r}" for a, b in zip(old, new) if a != b] or [f"{len(old)} -> {len(new)} arguments"]
        return f"{run.out} was made by another command ({'; '.join(diff[:3])})"
    return None


def _git_info():
    def git(*args):
        try:
            return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _package_versions():
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "open_clip_torch", "numpy", "yacs", "Pillow", "scipy", "POT"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return versions


_ENV_INFO = {}


def env_info():
    if not _ENV_INFO:
        _ENV_INFO.update(git=_git_info(), packages=_package_versions())
    return _ENV_INFO


def write_record(run, cmd, launcher, gpu):
    path = os.path.join(run.out, RECORD)
    old = read_json(path) or {}
    write_json_atomic(path, {
        "protocol": run.protocol, "kind": run.kind, "trainer": run.trainer, "dataset": run.dataset,
        "seed": run.seed, "shots": run.shots, "cfg": run.cfg,
        "command": cmd, "cwd": REPO, "signature": signature(run), "load_epoch": run.load_epoch,
        "stage": run.stage or None, "previous_stage": run.previous.out if run.previous is not None else None,
        "git": env_info()["git"], "packages": env_info()["packages"], "host": socket.gethostname(),
        "launcher": launcher, "gpu": gpu, "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "attempts": old.get("attempts", 0) + 1,
    })
    write_text_atomic(os.path.join(run.out, "command.sh"),
                      "#!/usr/bin/env bash\n# written by tools/sweep.py; rerunning it resumes the run\n"
                      f"cd {shlex.quote(REPO)} && {shlex.join(cmd)}\n")


def log_stats(folder):
    """{log file name: (mtime, size)}: compared before and after a run to find the log it wrote."""
    stats = {}
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if is_log_name(name):
            st = os.stat(os.path.join(folder, name))
            stats[name] = (st.st_mtime_ns, st.st_size)
    return stats


def finalize(run, before, started):
    """After exit status 0: find the log this attempt wrote, check its result block, write the marker.
    Returns (ok, message)."""
    after = log_stats(run.out)
    changed = [n for n, s in after.items() if before.get(n) != s]
    if not changed:
        return False, "train.py exited 0 but wrote no log"
    log = max(changed, key=lambda n: (after[n][0], n))
    info = read_log(os.path.join(run.out, log))
    if info["acc"] is None:
        return False, f"train.py exited 0 but {log} has no result block"
    final_epoch = None
    if run.kind == "train":
        final_epoch = last_checkpoint_epoch(run.out)
        if final_epoch is None:
            return False, "training finished without a checkpoint"
    config = os.path.join(run.out, "config.yaml")
    if info["config_text"] and not _written_since(config, started):  # train.py's own dump is the exact one
        write_text_atomic(config, info["config_text"])
    cost = read_json(os.path.join(run.out, COST_FILE)) if _written_since(os.path.join(run.out, COST_FILE),
                                                                        started) else None
    write_json_atomic(os.path.join(run.out, DONE), {
        "accuracy": info["acc"], "log": log, "final_epoch": final_epoch,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"), "seconds": round(time.time() - started, 1),
        "cost": cost})
    return True, f"{info['acc']:.2f}%"


def _written_since(path, started):
    """``path`` exists and was written by this attempt (a file of an earlier attempt is stale)."""
    try:
        return os.stat(path).st_mtime >= started - 1
    except OSError:
        return False
