"""Fault injection on run folders (README "Run folders"): a run killed at every step of the checkpoint
protocol resumes to exactly the uninterrupted run's result; a second writer, a folder of another run, a full
disk or a read-only folder is refused or reported in one line (exit 2), and the folder is left resumable.

Each run is train.py forked from this process (torch and the registries imported once), killed with SIGKILL
by the fault hook meta.runs.fault_point (VLPROMPT_FAULT_AT), as a kill -9 at that instant would."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import traceback

import pytest
import torch

from meta.run_folder import RUN_LOCK, RUN_RECORD
from meta.runs import FAULT_ENV, TMP_PREFIX
from tests.helpers import coop_args, make_caltech, with_flags

AUG = ["INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']"]
COMMON = ("TEST.SAVE_LOGITS", "True", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", *AUG)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_clip):
    import train
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (imported once here, not in every child)

    root = make_caltech(str(tmp_path_factory.mktemp("data")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    real_env_info = train.collect_env_info
    train.collect_env_info = lambda: "(not collected in this test)"  # shells out for ~1 s per run
    yield root, tiny_clip, tmp_path_factory.mktemp("runs")
    train.collect_env_info = real_env_info
    torch.set_num_threads(threads)


def forked(argv, fault=None):
    """Run train.py's ``run(argv)`` in a forked child; (exit status or -signal, stdout, stderr)."""
    import train

    tag = f"{os.getpid()}-{forked.calls}"
    forked.calls += 1
    out_path, err_path = f"/tmp/vlprompt-test-{tag}.out", f"/tmp/vlprompt-test-{tag}.err"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            for fd, path in ((1, out_path), (2, err_path)):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            os.environ.pop(FAULT_ENV, None)
            if fault:
                os.environ[FAULT_ENV] = fault
            try:
                train.run(argv)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    texts = []
    for path in (out_path, err_path):
        with open(path) as f:
            texts.append(f.read())
        os.remove(path)
    return os.waitstatus_to_exitcode(status), texts[0], texts[1]


forked.calls = 0


def args(setup, out, *extra, seed=1, epochs=2):
    root, clip, _ = setup
    return coop_args(root, clip, out, *COMMON, *extra, epochs=epochs, seed=seed)


def one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def outcome(out):
    """What an uninterrupted run leaves: logits, the checkpoint folder, the pointer, the prompt, the accuracy."""
    folder = os.path.join(out, "prompt_learner")
    logs = sorted(f for f in os.listdir(out) if f.startswith("log.txt"))
    last = open(os.path.join(out, logs[-1])).read().splitlines()
    return {"logits": torch.load(os.path.join(out, "logits_test.pt"), weights_only=False)["logits"],
            "files": sorted(os.listdir(folder)), "pointer": open(os.path.join(folder, "checkpoint")).read(),
            "ctx": torch.load(os.path.join(folder, "model.pth.tar-2"), weights_only=False)["state_dict"]["ctx"],
            "accuracy": [line for line in last if line.startswith("* accuracy:")],
            "leftovers": [f for f in os.listdir(out) if f.startswith(TMP_PREFIX) or f == RUN_LOCK]}


@pytest.fixture(scope="module")
def reference(setup):
    out = os.path.join(setup[2], "reference")
    code, stdout, err = forked(args(setup, out))
    assert code == 0, stdout[-3000:] + err
    return out, outcome(out)


def assert_same_result(out, reference):
    got, want = outcome(out), reference[1]
    assert torch.equal(got["logits"], want["logits"])  # bit-identical
    assert torch.equal(got["ctx"], want["ctx"])
    assert got["files"] == want["files"] == ["checkpoint", "model.pth.tar-2"]
    assert got["pointer"] == want["pointer"] == "model.pth.tar-2\n"
    assert got["accuracy"] == want["accuracy"] and got["accuracy"]
    assert got["leftovers"] == [] and not any(f.startswith(TMP_PREFIX) for f in os.listdir(os.path.join(
        out, "prompt_learner")))


KILL_POINTS = [
    "written:run.json",                 # the record's temporary file complete, not yet renamed
    "written:model.pth.tar-1",          # the first checkpoint's temporary file complete
    "renamed:model.pth.tar-1",          # the first checkpoint in place, no pointer yet (issue 17, point 3)
    "written:checkpoint#1",
    "renamed:checkpoint#1",
    "renamed:model.pth.tar-2",          # epoch 2's file in place, the pointer still names epoch 1
    "renamed:checkpoint#2",             # the pointer names epoch 2, epoch 1's file not yet removed
    "removed:model.pth.tar-1",
    "renamed:logits_test.pt",           # trained and evaluated, killed before the end of the run
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_each_step_resumes_to_the_uninterrupted_result(setup, reference, point):
    out = os.path.join(setup[2], "kill-" + point.replace(":", "-").replace("#", "-"))
    code, stdout, err = forked(args(setup, out), fault=point)
    assert code == -signal.SIGKILL, stdout[-2000:] + err
    if point.startswith("written:"):  # the kill left a temporary file behind
        left = [f for d in (out, os.path.join(out, "prompt_learner")) if os.path.isdir(d) for f in os.listdir(d)]
        assert any(f.startswith(TMP_PREFIX) for f in left)
    assert os.path.isfile(os.path.join(out, RUN_LOCK))  # a kill -9 leaves the lock; its pid is gone: stale
    code, stdout, err = forked(args(setup, out))
    assert code == 0, stdout[-3000:] + err
    assert_same_result(out, reference)


def test_disk_full_is_one_line_naming_the_file_and_the_last_checkpoint_and_the_run_resumes(setup, reference):
    out = os.path.join(setup[2], "disk-full")
    code, stdout, err = forked(args(setup, out), fault="written:model.pth.tar-2=ENOSPC")
    kept = os.path.join(out, "prompt_learner", "model.pth.tar-1")
    line = one_line_error(code, err, "No space left on device", os.path.join(out, "prompt_learner",
                                                                             "model.pth.tar-2"), kept)
    log = open(os.path.join(out, "log.txt")).read().strip().splitlines()
    assert log[-1] == line  # the error is the last line of the run's log
    assert not os.path.exists(os.path.join(out, RUN_LOCK))  # released on the way out
    code, stdout, err = forked(args(setup, out))
    assert code == 0, err
    assert_same_result(out, reference)


def test_read_only_folder_is_one_line(setup):
    out = os.path.join(setup[2], "read-only")
    code, _, err = forked(args(setup, out), fault="written:run.json=EROFS")
    one_line_error(code, err, os.path.join(out, RUN_RECORD), "read-only", "no checkpoint was written yet")


def test_sigint_is_one_line_and_resumable(setup, reference, monkeypatch):
    from engine.trainer import TrainerX

    real = TrainerX.run_epoch

    def interrupted(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(TrainerX, "run_epoch", interrupted)
    out = os.path.join(setup[2], "sigint")
    code, _, err = forked(args(setup, out))
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted (SIGINT) in epoch 2; the last intact "
                                                   "checkpoint is ") and "model.pth.tar-1" in lines[0]
    monkeypatch.setattr(TrainerX, "run_epoch", real)
    assert forked(args(setup, out))[0] == 0
    assert_same_result(out, reference)


def test_folder_of_another_run_is_refused_in_one_line_and_left_untouched(setup, reference):
    out = os.path.join(setup[2], "other-settings")
    shutil.copytree(reference[0], out)
    before = sorted(os.listdir(out))
    code, _, err = forked(args(setup, out, seed=2))
    one_line_error(code, err, "seed 1 -> 2", "--output-dir", "--overwrite", "--resume-anyway")
    code, _, err = forked(args(setup, out, "OPTIM.LR", "0.01"))
    one_line_error(code, err, "OPTIM.LR 0.002 -> 0.01")
    assert sorted(os.listdir(out)) == before  # no log of the refused runs, no lock left
    # the schedule changed mid-way: refused too
    killed = os.path.join(setup[2], "schedule")
    assert forked(args(setup, killed), fault="renamed:checkpoint#2")[0] == -signal.SIGKILL
    one_line_error(*forked(args(setup, killed, epochs=4))[::2], "OPTIM.MAX_EPOCH 2 -> 4")


def test_overwrite_starts_afresh_and_resume_anyway_continues(setup, reference):
    fresh = os.path.join(setup[2], "seed2-fresh")
    assert forked(args(setup, fresh, seed=2))[0] == 0
    out = os.path.join(setup[2], "overwrite")
    shutil.copytree(reference[0], out)
    code, stdout, err = forked(with_flags(args(setup, out, seed=2), "--overwrite"))
    assert code == 0, err
    assert "--overwrite: removed the previous run's prompt_learner/checkpoint" in stdout
    assert torch.equal(outcome(out)["logits"], outcome(fresh)["logits"])
    assert json.load(open(os.path.join(out, RUN_RECORD)))["signature"]["seed"] == 2

    more = os.path.join(setup[2], "anyway")
    shutil.copytree(reference[0], more)
    code, stdout, err = forked(with_flags(args(setup, more, epochs=3), "--resume-anyway"))
    assert code == 0, err
    assert "Previous epoch: 2" in stdout and "OPTIM.MAX_EPOCH 2 -> 3" in stdout
    assert "epoch [3/3]" in stdout
    # the folder now belongs to the 3-epoch run: the same command resumes it without the flag
    assert forked(args(setup, more, epochs=3))[0] == 0


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(setup, reference):
    from meta.run_folder import RunLock

    out = os.path.join(setup[2], "locked")
    held = RunLock(out).acquire()  # this (live) process holds the folder
    try:
        code, _, err = forked(args(setup, out))
        one_line_error(code, err, "in use by another train.py", f"pid {os.getpid()}", socket.gethostname())
        assert not [f for f in os.listdir(out) if f.startswith("log.txt")]
    finally:
        held.release()
    with open(os.path.join(out, RUN_LOCK), "w") as f:  # left by a process that died (kill -9)
        json.dump({"pid": _dead_pid(), "host": socket.gethostname(), "start": None, "started": "earlier"}, f)
    assert forked(args(setup, out))[0] == 0
    assert_same_result(out, reference)


def test_two_runs_started_together_into_one_folder_one_is_refused(setup):
    out = os.path.join(setup[2], "together")
    import train

    pids = []
    for seed in (1, 2):  # started together: whichever comes second is refused (busy, or other settings)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fd = os.open(os.devnull, os.O_WRONLY)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                train.run(args(setup, out, seed=seed))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                pass
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert sorted(codes) == [0, 2], codes
    winner = (1, 2)[codes.index(0)]
    assert json.load(open(os.path.join(out, RUN_RECORD)))["signature"]["seed"] == winner
    logs = [f for f in os.listdir(out) if f.startswith("log.txt")]
    assert logs and all(f"seed: {winner}\n" in open(os.path.join(out, f)).read() for f in logs)


def test_files_are_group_readable_per_umask(reference):
    out = reference[0]
    for path in (os.path.join(out, "prompt_learner", "model.pth.tar-2"), os.path.join(out, "logits_test.pt"),
                 os.path.join(out, RUN_RECORD)):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask(), path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_eval_only_without_model_dir_needs_untrained(setup):
    out = os.path.join(setup[2], "eval-untrained")
    code, _, err = forked(with_flags(args(setup, out), "--eval-only"))
    one_line_error(code, err, "--model-dir", "--untrained")
    assert forked(with_flags(args(setup, out), "--eval-only", "--untrained"))[0] == 0


def test_silent_oddities_are_one_line_errors(setup, tmp_path):
    def error(*extra, root=None):
        out = str(tmp_path / f"o{error.n}")
        error.n += 1
        argv = args(setup, out, *extra)
        if root:
            argv[argv.index("--root") + 1] = root
        return forked(argv)[::2]

    error.n = 0
    one_line_error(*error("DATASET.NUM_SHOTS", "100"), "DATASET.NUM_SHOTS 100", "fewest 4", "DATASET.CAP_SHOTS True")
    one_line_error(*error("DATASET.NUM_SHOTS", "-3"), "got -3")
    one_line_error(*error("INPUT.SIZE", "(32, 48)"), "INPUT.SIZE", "(32, 32)")
    text = tmp_path / "weights.txt"
    text.write_text("hello\n")
    pickled = tmp_path / "weights.pkl"
    pickled.write_bytes(__import__("pickle").dumps({"x": socket.socket}))
    for bad in (text, pickled):
        assert "weights_only" not in one_line_error(*error("MODEL.BACKBONE.PATH", str(bad)), str(bad))
    empty = str(tmp_path / "empty")
    shutil.copytree(setup[0], empty)
    split = os.path.join(empty, "caltech-101", "split_zhou_Caltech101.json")
    data = json.load(open(split))
    json.dump({**data, "train": []}, open(split, "w"))
    one_line_error(*error(root=empty), "no images", "no classes")
    code, stdout, err = forked(args(setup, str(tmp_path / "capped"), "DATASET.NUM_SHOTS", "100",
                                    "DATASET.CAP_SHOTS", "True", epochs=1))
    assert code == 0 and "use all of them" in stdout, err


def test_a_trainer_rule_that_changes_the_epochs_is_a_start_up_warning_and_in_the_summary(setup, tmp_path):
    root, clip, _ = setup
    argv = coop_args(root, clip, str(tmp_path / "align"), "TRAINER.MMP.PREC", "fp32", "TRAINER.MMP.TEXT_PROMPT_DEPTH",
                     "1", "DATASET.NUM_SHOTS", "4", trainer="ALIGN", config="vit_b16_c2_ep5_batch4_2ctx.yaml")
    code, stdout, err = forked(with_flags(argv, "--no-train"))
    assert code == 0, err
    warning = next(line for line in stdout.splitlines() if line.startswith("Warning: OPTIM.MAX_EPOCH 2 -> "))
    lines = stdout.splitlines()
    assert lines.index(warning) < lines.index("** Arguments **")  # before the config dump
    assert lines[-2:] == ["** Run summary: warnings **", warning]


def test_a_crash_lands_in_the_log_and_out_of_memory_is_one_line(setup, monkeypatch, tmp_path):
    import train
    from engine.trainer import TrainerX

    def crash(self):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(TrainerX, "run_epoch", crash)
    out = str(tmp_path / "crash")
    code, _, err = forked(args(setup, out))
    assert code == 1 and "Traceback" in err
    log = open(os.path.join(out, "log.txt")).read()
    assert "Traceback" in log and "ValueError: a bug, not a user error" in log  # stderr is in the log too
    assert not os.path.exists(os.path.join(out, RUN_LOCK))
    line = train.failure_message(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                              "123 bytes"), None)
    assert line.startswith("out of memory (DefaultCPUAllocator") and "BATCH_SIZE" in line


def test_best_val_run_killed_late_resumes_to_the_same_best_model(setup):
    """TEST.FINAL_MODEL best_val: the resumed run knows the saved best val result, so model-best.pth.tar is
    replaced only by a better epoch, as in the uninterrupted run."""
    best = ("TEST.FINAL_MODEL", "best_val")
    full = os.path.join(setup[2], "best-full")
    assert forked(args(setup, full, *best, epochs=3))[0] == 0
    killed = os.path.join(setup[2], "best-killed")
    assert forked(args(setup, killed, *best, epochs=3), fault="written:model.pth.tar-3")[0] == -signal.SIGKILL
    code, _, err = forked(args(setup, killed, *best, epochs=3))
    assert code == 0, err
    load = lambda out, name: torch.load(os.path.join(out, name), weights_only=False)  # noqa: E731
    a, b = (load(out, "prompt_learner/model-best.pth.tar") for out in (full, killed))
    assert a["epoch"] == b["epoch"] and a["val_result"] == b["val_result"]
    assert torch.equal(a["state_dict"]["ctx"], b["state_dict"]["ctx"])
    assert torch.equal(load(full, "logits_test.pt")["logits"], load(killed, "logits_test.pt")["logits"])
