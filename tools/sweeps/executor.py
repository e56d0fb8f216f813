"""The local queue: runs spread over slots (one run per GPU at a time, or N at once on the CPU), each
evaluation after the training run it loads and each chained training run after its previous stage
(``Run.depends_on``), every run folder locked while it runs: the driver's flock on .sweep.lock, and train.py's
own lock on the folder (meta/run_folder.py), which outlives a killed driver, so a rerun starts no second writer."""
import fcntl
import os
import sys
import time

from meta.run_folder import lock_holder
from meta.runs import LOCK
from tools.train_config import ConfigError

from .launch import HELD_LOCKS, launch
from .records import check_signature, finalize, is_done, log_stats, state, write_record

NOT_DONE = ("failed", "blocked", "busy")


class Executor:
    def __init__(self, runs, slots=1, gpus=None, launcher="subprocess", python=None, verbose=False, quiet=False):
        self.runs = runs
        self.gpus = gpus or []
        self.slots = max(1, slots)
        self.launcher = launcher
        self.python = python or [sys.executable]
        self.verbose = verbose
        self.quiet = quiet
        self.status = {}  # out -> "done" | "ran" | NOT_DONE
        self.messages = {}
        cpus = os.cpu_count() or 1
        self.threads = max(1, cpus // self.slots) if (not self.gpus and self.slots > 1) else None

    def say(self, msg):
        if not self.quiet:
            print(msg, flush=True)

    def fail(self, r, status, message):
        self.status[r.out] = status
        self.messages[r.out] = message

    def run(self):
        todo = []
        for r in self.runs:
            problem = check_signature(r) if is_done(r) else None
            if problem:
                self.fail(r, "failed", problem)
                self.say(f"  FAILED {r.name}: {problem}; use another OUTPUT or delete the folder")
            elif is_done(r):
                self.status[r.out] = "done"
            else:
                todo.append(r)
        n_total = len(todo)
        self.say(f"{len(self.runs)} runs: {len(self.runs) - n_total} done, {n_total} to run"
                 + (f" on GPUs {','.join(map(str, self.gpus))}" if self.gpus else
                    f" ({self.slots} at a time)" if self.slots > 1 else ""))
        running = {}  # slot -> (run, process, lock_fd, logs before, start time)
        free = list(range(self.slots))
        k = 0
        try:
            while todo or running:
                for r in list(todo):
                    if not free:
                        break
                    dep = r.depends_on
                    if dep is not None and self.status.get(dep.out) in NOT_DONE:
                        todo.remove(r)
                        self.fail(r, "blocked", f"its {'model' if r.model is not None else 'previous stage'} "
                                                f"{dep.out} is not done")
                        self.say(f"  blocked {r.name} (needs {dep.name})")
                        continue
                    if dep is not None and not is_done(dep):
                        continue
                    todo.remove(r)
                    k += 1
                    slot = free.pop(0)
                    started = self.start(r, slot, k, n_total)
                    if started is None:
                        free.append(slot)
                    else:
                        running[slot] = started
                if not running:
                    for r in todo:  # only runs whose dependency is outside this sweep and not done
                        self.fail(r, "blocked", f"its dependency {r.depends_on.out} is not done")
                    break
                time.sleep(0.05)
                for slot, (r, proc, fd, before, started) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    del running[slot]
                    free.append(slot)
                    self.finish(r, code, before, started)
                    HELD_LOCKS.discard(fd)
                    os.close(fd)
        except KeyboardInterrupt:
            for r, proc, fd, _, _ in running.values():
                proc.kill()
            self.say("interrupted; rerun the same command to continue (finished runs are kept, killed "
                     "training runs resume from their last epoch)")
            raise
        return self.status

    def start(self, r, slot, k, n):
        problem = check_signature(r)
        if problem:
            self.fail(r, "failed", problem + "; use another OUTPUT or delete the folder")
            self.say(f"[{k}/{n}] FAILED {r.name}: {self.messages[r.out]}")
            return None
        try:
            cmd_args = r.argv()  # an evaluation's load epoch: its training run's resolved MAX_EPOCH
        except ConfigError as e:
            self.fail(r, "failed", f"train.py refuses its command line: {e}")
            self.say(f"[{k}/{n}] FAILED {r.name}: {self.messages[r.out]}")
            return None
        os.makedirs(r.out, exist_ok=True)
        fd = os.open(os.path.join(r.out, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.fail(r, "busy", "another sweep is running it")
            self.say(f"[{k}/{n}] busy {r.name}: another sweep is running it")
            return None
        if is_done(r):  # finished by another sweep meanwhile
            os.close(fd)
            self.status[r.out] = "done"
            return None
        holder = lock_holder(r.out)  # train.py holds its folder: e.g. the child of a killed sweep still runs
        if holder is not None:
            os.close(fd)
            self.fail(r, "busy", f"train.py (pid {holder.get('pid')} on {holder.get('host')}) is still running it")
            self.say(f"[{k}/{n}] busy {r.name}: {self.messages[r.out]}")
            return None
        HELD_LOCKS.add(fd)
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        interpreter = self.python if self.launcher == "subprocess" else [sys.executable]
        write_record(r, [*interpreter, "train.py", *cmd_args], self.launcher, gpu)
        before = log_stats(r.out)
        what = state(r)
        self.say(f"[{k}/{n}] {r.kind:5s} {r.name}" + (f" (resuming, {what})" if what.startswith("partial") else "")
                 + (f" [GPU {gpu}]" if gpu is not None else ""))
        proc = launch(r, cmd_args, self.python, self.launcher, gpu, self.threads, self.verbose)
        return r, proc, fd, before, time.time()

    def finish(self, r, code, before, started):
        ok, msg = finalize(r, before, started) if code == 0 else (False, f"exit status {code}")
        self.status[r.out] = "ran" if ok else "failed"
        self.messages[r.out] = msg
        if ok:
            self.say(f"      done  {r.name}: {msg} ({time.time() - started:.0f} s)")
            return
        output = os.path.join(r.out, "sweep_output.txt")
        self.say(f"      FAILED {r.name}: {msg}; see {output}")
        tail = _tail(output, 8)
        if tail:
            self.say("        | " + "\n        | ".join(tail))


def _tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f.readlines()[-n:]]
    except OSError:
        return []


def execute_chain(runs, python=None, verbose=False):
    """Run a list of runs in order on this machine (the body of a SLURM job)."""
    status = Executor(runs, python=python, verbose=verbose).run()
    return {os.path.relpath(r.out, r.out_root): status.get(r.out) for r in runs}
