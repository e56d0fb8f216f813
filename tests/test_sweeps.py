"""Sweeps (tools/sweep.py, scripts/<sweep>/*.sh generated from the method data), results tables
(tools/parse_results.py) and plots (tools/plot_results.py)."""
import contextlib
import csv
import glob
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import types

import pytest

from meta.methods import all_sweeps
from meta.protocols import B2N_DATASETS, PROTOCOLS, default_datasets
from tests.datasets.fakes import make_caltech, make_dtd
from tools import parse_results as pr
from tools import plot_results, sweep
from tools.sweeps import plan as sweep_plan
from tools.sweeps.plan import plan
from tools.sweeps.scripts import SCRIPTS_DIR, expected_scripts, stale_folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures")
SWEEPS = all_sweeps()
METHODS = [key for key, s in SWEEPS.items() if s.scripts]  # every sweep that has scripts/<key>/
B2N_RUN = os.path.join("base2new", "{}", "{}", "shots_16", "CoOp", "vit_b16_ctxv1", "seed{}")


def tiny_opts(clip):
    return ["MODEL.BACKBONE.NAME", "custom", "MODEL.BACKBONE.PATH", clip, "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", "2",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "16",
            "DATASET.CAP_SHOTS", "True"]  # the protocol's 16 shots; the fake trees have 4 images per class


def run_script(method, protocol, args, env):
    env = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", f"scripts/{method}/{protocol}.sh", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def b2n_cells(root):
    return {k: v for k, v in pr.collect(root).cells.items() if k[0] == "base2new"}


# ----------------------------------------------------------------------------------------------------
# The real thing: train.py on a tiny random CLIP and two generated datasets
# ----------------------------------------------------------------------------------------------------

def test_base2new_sweep_end_to_end_kill_and_resume(tmp_path, tiny_clip):
    data = make_caltech(str(tmp_path / "data"))
    make_dtd(data).write_split(data)
    a, b = str(tmp_path / "A"), str(tmp_path / "B")
    env = {"DATA": data, "SEEDS": "1 2", "OPTS": shlex.join(tiny_opts(tiny_clip))}

    # 1. two datasets x two seeds, uninterrupted, two runs at a time
    r = run_script("coop", "base2new", ["caltech101", "dtd", "--launch", "fork", "--jobs", "2"], {**env, "OUTPUT": a})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 runs: 0 done, 8 to run" in r.stdout
    for d in ("caltech101", "dtd"):
        for s in (1, 2):
            for phase in ("train_base", "test_new"):
                assert os.path.isfile(os.path.join(a, B2N_RUN.format(phase, d, s), "done.json"))
    run_dir = os.path.join(a, B2N_RUN.format("test_new", "dtd", 1))
    for name in ("sweep.json", "command.sh", "config.yaml", "log.txt", "sweep_output.txt"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    rec = json.load(open(os.path.join(run_dir, "sweep.json")))
    assert rec["command"][1:3] == ["train.py", "--root"] and "--eval-only" in rec["command"]
    assert rec["command"][rec["command"].index("--load-epoch") + 1] == "2"  # the config's MAX_EPOCH
    assert rec["git"]["commit"] and rec["packages"]["torch"]
    assert "SUBSAMPLE_CLASSES: new" in open(os.path.join(run_dir, "config.yaml")).read()
    # the table is printed at the end: per dataset rows and the Average
    table = r.stdout[r.stdout.index("Base-to-new"):]
    assert "Caltech101" in table and "DTD" in table and "Average" in table and "CoOp" in table
    cells_a = b2n_cells(a)
    assert {k[2] for k in cells_a} == {"caltech101", "dtd"}
    assert all(set(v) == {1, 2} for v in cells_a.values())

    # 2. the same sweep, but the training run dtd/seed2 is killed (SIGKILL) after its first epoch
    shutil.copytree(a, b)
    victim = os.path.join(b, B2N_RUN.format("train_base", "dtd", 2))
    shutil.rmtree(victim)
    shutil.rmtree(os.path.join(b, B2N_RUN.format("test_new", "dtd", 2)))
    crash = {"CRASH_OUTPUT_DIR": victim, "CRASH_AFTER_EPOCH": "1"}
    r = run_script("coop", "base2new", ["caltech101", "dtd", "--python",
                                        f"{sys.executable} {os.path.join(FIX, 'crash_train.py')}"],
                   {**env, **crash, "OUTPUT": b})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "exit status -9" in r.stdout and "blocked" in r.stdout
    assert os.path.isfile(os.path.join(victim, "prompt_learner", "model.pth.tar-1"))
    assert not os.path.exists(os.path.join(victim, "prompt_learner", "model.pth.tar-2"))
    assert not os.path.exists(os.path.join(victim, "done.json"))
    res = pr.collect(b)  # the unfinished run is not counted
    assert victim in res.skipped
    assert set(res.cells[("base2new", "CoOp", "dtd", 16, "base")]) == {1}

    # 3. rerunning the sweep does only the missing work: resume the killed run, then its evaluation
    r = run_script("coop", "base2new", ["caltech101", "dtd", "--launch", "fork"], {**env, "OUTPUT": b})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "8 runs: 6 done, 2 to run" in r.stdout
    assert "resuming, partial (epoch 1)" in r.stdout
    done = json.load(open(os.path.join(victim, "done.json")))
    assert done["log"] != "log.txt" and done["final_epoch"] == 2  # a second log, as Dassl names it
    resumed_log = open(os.path.join(victim, done["log"])).read()
    assert "will resume training" in resumed_log and "epoch [1/2]" not in resumed_log
    assert json.load(open(os.path.join(victim, "sweep.json")))["attempts"] == 2

    # the final table equals the uninterrupted sweep's
    assert b2n_cells(b) == cells_a
    render = lambda root: pr.render(pr.build_tables(pr.collect(root)), "csv")  # noqa: E731
    assert render(b) == render(a)

    # 4. a complete sweep reruns nothing (and does not even import train.py)
    r = run_script("coop", "base2new", ["caltech101", "dtd", "--launch", "fork", "--no-table"],
                   {**env, "OUTPUT": a})
    assert r.returncode == 0 and "8 runs: 8 done, 0 to run" in r.stdout


# ----------------------------------------------------------------------------------------------------
# The driver's queue with a stand-in for train.py (fast)
# ----------------------------------------------------------------------------------------------------

def fake_sweep(tmp_path, monkeypatch, *args, protocol="base2new", method="coop"):
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(tmp_path / "fake.jsonl"))
    monkeypatch.setenv("FAKE_SLEEP", "0.3")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = sweep.main([protocol, method, "--root", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                           "--python", f"{sys.executable} {os.path.join(FIX, 'fake_train.py')}", *args])
    calls = [json.loads(line) for line in open(tmp_path / "fake.jsonl")] if (tmp_path / "fake.jsonl").exists() else []
    return code, out.getvalue(), calls


def test_queue_spreads_runs_over_gpus_and_respects_dependencies(tmp_path, monkeypatch):
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "dtd", "eurosat", "--seeds", "1 2",
                                  "--gpus", "0,1", "--", "OPTIM.MAX_EPOCH", "7")
    assert code == 0, out
    assert len(calls) == 12 and {c["gpu"] for c in calls} == {"0", "1"}
    for c in calls:  # never two runs on one GPU at once
        overlap = [o for o in calls
                   if o is not c and o["gpu"] == c["gpu"] and o["start"] < c["end"] and c["start"] < o["end"]]
        assert not overlap
    assert max(sum(o["start"] <= c["start"] < o["end"] for o in calls) for c in calls) == 2
    by_out = {c["out"]: c for c in calls}
    for c in calls:
        if c["eval_only"]:  # after its training run, loading the last saved epoch
            assert c["load_epoch"] == "7" and c["start"] >= by_out[c["model_dir"]]["end"]
    assert "Base-to-new" in out and "EuroSAT" in out


def test_failed_runs_are_not_done_and_a_rerun_does_only_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "dtd")
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "dtd", "--seeds", "1")
    assert code == 1 and "FAILED" in out and "fake failure" in out and "blocked" in out
    assert len(calls) == 3  # the dtd evaluation never started
    monkeypatch.setenv("FAKE_FAIL", "")
    monkeypatch.setenv("FAKE_NO_RESULT", "dtd")  # exit status 0 without a result block is not success
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "dtd", "--seeds", "1")
    assert code == 1 and "has no result block" in out and len(calls) == 4
    monkeypatch.setenv("FAKE_NO_RESULT", "")
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "dtd", "--seeds", "1")
    assert code == 0 and "4 runs: 2 done, 2 to run" in out and len(calls) == 6
    # the same folders with other settings are refused, not silently reused
    code, out, _ = fake_sweep(tmp_path, monkeypatch, "caltech101", "--seeds", "1", "--", "OPTIM.LR", "0.1")
    assert code == 1 and "was made by another command" in out


def test_a_run_whose_train_py_still_runs_is_busy_not_started_twice(tmp_path, monkeypatch):
    """The sweep driver was killed but its train.py child lives on, holding its folder: a rerun skips it."""
    from meta.run_folder import RunLock

    monkeypatch.setenv("FAKE_FAIL", "caltech101")
    fake_sweep(tmp_path, monkeypatch, "caltech101", "--seeds", "1")
    monkeypatch.setenv("FAKE_FAIL", "")
    train_dir = next(os.path.dirname(p) for p in glob.glob(str(tmp_path / "out" / "**" / "sweep.json"), recursive=True)
                     if "train_base" in p)
    child = RunLock(train_dir).acquire()  # stands for the orphaned child (this process: alive)
    try:
        code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "--seeds", "1")
    finally:
        child.release()
    assert code == 1 and f"pid {os.getpid()}" in out and "is still running it" in out
    assert not [c for c in calls[1:] if c["out"] == train_dir]  # not started a second time


def test_slurm_submission(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(SystemExit, match="pip install submitit"):
        sweep.main(["base2new", "coop", "dtd", "--slurm", "--root", str(tmp_path), "--output", str(tmp_path)])
    submitted = []

    class Job:
        def __init__(self, fn, args):
            self.job_id = str(100 + len(submitted))
            self._result = fn(*args)  # runs at once, as submitit's debug executor does

        def result(self):
            return self._result

    class AutoExecutor:
        def __init__(self, folder, cluster=None):
            self.folder, self.params = folder, {}

        def update_parameters(self, **kw):
            self.params.update(kw)
            submitted.append(("params", kw))

        @contextlib.contextmanager
        def batch(self):
            yield

        def submit(self, fn, *args):
            job = Job(fn, args)
            submitted.append(("job", [r.kind for r in args[0]]))
            return job

    monkeypatch.setitem(sys.modules, "submitit", types.SimpleNamespace(AutoExecutor=AutoExecutor))
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "dtd", "--seeds", "1", "--slurm",
                                  "--slurm-partition", "gpu", "--slurm-time", "60", "--slurm-wait")
    assert code == 0, out
    params = submitted[0][1]
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 60 and params["gpus_per_node"] == 1
    assert [s[1] for s in submitted[1:]] == [["train", "eval"], ["train", "eval"]]  # one job per train + its eval
    assert len(calls) == 4 and "submitted 2 SLURM jobs" in out


# ----------------------------------------------------------------------------------------------------
# Protocol data and the scripts (one per protocol for every sweep of the method data with scripts)
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scripts_are_thin_and_their_configs_exist(protocol):
    for method in METHODS:
        path = os.path.join(REPO, "scripts", method, f"{protocol}.sh")
        text = open(path).read()
        code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        assert code == [f'exec "${{PYTHON:-python3}}" "$(dirname "$0")/../../tools/sweep.py" {protocol} {method} "$@"']
        assert os.access(path, os.X_OK)
        runs = plan(protocol, method, default_datasets(protocol), [1, 2, 3], SWEEPS[method].default_shots(protocol),
                    "/out", "/data")
        assert runs
        for r in runs:
            assert os.path.isfile(os.path.join(REPO, r.config_file)), r.config_file
            assert os.path.isfile(os.path.join(REPO, "configs", "datasets", f"{r.dataset}.yaml"))
            if r.kind == "eval" and r.model is not None:
                assert r.model.max_epoch and r.model in runs


def test_scripts_are_what_the_method_data_generates():
    """``python tools/sweep.py --write-scripts`` output, headers included; no folder of a removed sweep."""
    expected = expected_scripts()
    assert len(expected) == len(METHODS) * len(PROTOCOLS)
    for rel, text in expected.items():
        assert open(os.path.join(SCRIPTS_DIR, rel)).read() == text, f"{rel}: run python tools/sweep.py --write-scripts"
    on_disk = {os.path.join(d, f) for d in METHODS for f in os.listdir(os.path.join(SCRIPTS_DIR, d))}
    assert on_disk == set(expected)
    assert stale_folders() == []
    header = expected[os.path.join("sep", "base2new.sh")]
    assert "SEP, base-to-new generalisation" in header and "seeds 1 2 3" in header
    assert "configs/trainers/SEP/method.yaml, sweeps.sep.base2new" in header and "htyao89/SEP" in header


def test_protocol_layouts_and_official_settings():
    runs = plan("base2new", "sep", ["imagenet", "dtd"], [1], [16], "/o", "/d")
    tr, ev = runs[0], runs[1]
    assert tr.out == "/o/base2new/train_base/imagenet/shots_16/SEP/vit_b128_ep10_ctxv1/seed1"
    assert ev.out == "/o/base2new/test_new/imagenet/shots_16/SEP/vit_b128_ep10_ctxv1/seed1"
    assert ev.argv()[ev.argv().index("--load-epoch") + 1] == "10" and "--eval-only" in ev.argv()
    assert runs[2].cfg == "vit_b32_ep50_ctxv1" and runs[2].max_epoch == 50
    assert "TRAINER.COOP.N_CTX_V" in tr.opts and tr.opts[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "base"]
    dg = plan("domain_gen", "maple", ["imagenet_a"], [1], [16], "/o", "/d")
    assert [r.out for r in dg] == [
        "/o/cross_dataset/train_source/imagenet/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets/seed1",
        "/o/domain_gen/test_target/imagenet_a/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets/seed1"]
    fs = plan("few_shot", "coop", ["dtd", "imagenet"], [1], [1, 4, 16], "/o", "/d")
    assert [r.cfg for r in fs] == ["rn50_ep50", "rn50_ep100", "rn50", "rn50_ep50", "rn50_ep50", "rn50_ep50"]
    zs = plan("base2new", "zsclip", ["dtd"], [1], [16], "/o", "/d")
    assert [(r.kind, r.out.split("/")[3]) for r in zs] == [("eval", "test_base"), ("eval", "test_new")]
    assert SWEEPS["kgcoop"].default_shots("few_shot") == [4]
    assert SWEEPS["maple"].default_shots("few_shot") == [1, 2, 4, 8, 16]


def test_dry_run_and_env_overrides(monkeypatch, capsys):
    monkeypatch.setenv("SEEDS", "5")
    monkeypatch.setenv("SHOTS", "8")
    monkeypatch.setenv("OPTS", "OPTIM.MAX_EPOCH 3 INPUT.SIZE '(32, 32)'")
    monkeypatch.setenv("OUTPUT", "/nonexistent/out")
    assert sweep.main(["base2new", "kgcoop", "eurosat", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "base2new/train_base/eurosat/shots_8/KgCoOp/vit_b16_ep100_ctxv1/seed5  (MAX_EPOCH 3)" in out
    assert "TRAINER.COOP.W 8.0" in out
    assert "(loads epoch 3)" in out and "--load-epoch 3" in out and "'(32, 32)'" in out
    with pytest.raises(SystemExit, match="unknown dataset"):
        sweep.main(["base2new", "coop", "imagenet21k", "--dry-run"])


def test_resume_anyway_reaches_every_run_but_not_its_signature(monkeypatch, capsys):
    from tools.sweeps.plan import plan
    from tools.sweeps.records import signature

    monkeypatch.setenv("RESUME_ANYWAY", "1")
    assert sweep.main(["base2new", "coop", "eurosat", "--dry-run", "--seeds", "1"]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if "train.py" in line]
    assert commands and all("--resume-anyway" in line for line in commands)
    run = plan("base2new", "coop", ["eurosat"], [1], [16], "/out", "/data")[0]
    before = signature(run)
    run.flags.append("--resume-anyway")
    assert "--resume-anyway" in run.argv(load_epoch=False) and signature(run) == before


def test_demo_switch_runs_every_sweep_offline_with_the_demo_configs(monkeypatch, capsys):
    """DEMO=1: SyntheticShapes by default, each trainer's demo.yaml (zero-shot: its own, not the sweep's CoOp
    folder), root OUTPUT/data; a sweep with stages trains its demo config once; no transfer protocol."""
    monkeypatch.setenv("DEMO", "1")
    monkeypatch.setenv("OUTPUT", "/nonexistent/out")
    monkeypatch.delenv("DATA", raising=False)
    assert sweep.main(["base2new", "sep", "--seeds", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "base2new/train_base/synthetic_shapes/shots_16/SEP/demo/seed1" in out
    assert "--config-file configs/trainers/SEP/demo.yaml" in out and "--root /nonexistent/out/data" in out
    assert "TRAINER.COOP.W 8.0" in out  # the sweep's method options still apply
    for key, sweep_ in SWEEPS.items():
        runs = plan("base2new", key, ["synthetic_shapes"], [1], [16], "/o", "/d", demo=True)
        assert {r.config_file for r in runs} == {f"configs/trainers/{sweep_.trainer}/demo.yaml"}, key
        assert sum(r.kind == "train" for r in runs) == (1 if sweep_.train else 0), key
    for argv, error in ((["cross_dataset", "sep"], "needs ImageNet"), (["base2new", "sep", "dtd"], "only"),
                        (["base2new", "sep", "--cfg", "vit_b16"], "leave out --cfg")):
        with pytest.raises(SystemExit, match=error):
            sweep.main([*argv, "--dry-run"])


def test_load_epoch_comes_from_the_resolved_config(monkeypatch, capsys):
    """Not the yaml's MAX_EPOCH: what train.py resolves (a trainer's rule may set it, as ALIGN's few-shot one)."""
    seen = []

    def resolved(argv):
        seen.append(argv)
        return types.SimpleNamespace(OPTIM=types.SimpleNamespace(MAX_EPOCH=42))

    monkeypatch.setattr(sweep_plan, "resolve_config", resolved)
    assert sweep.main(["base2new", "align", "dtd", "--seeds", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(MAX_EPOCH 42)" in out and "(loads epoch 42)" in out and "--load-epoch 42" in out
    assert len(seen) == 1 and "--eval-only" not in seen[0] and "DATASET.SUBSAMPLE_CLASSES" in seen[0]


# ----------------------------------------------------------------------------------------------------
# Parsing: official logs (fixtures) and the published numbers
# ----------------------------------------------------------------------------------------------------

def _row(table, *first):
    return next(r for r in table.rows if tuple(r[:len(first)]) == first)


def test_parser_on_official_logs():
    res = pr.collect(os.path.join(FIX, "official_logs"))
    c = res.cells
    # MaPLe base-to-new (current Dassl, one decimal); the val result before "Finish training" is ignored
    assert c[("base2new", "MaPLe", "caltech101", 16, "base")] == {1: 97.7, 2: 98.1, 3: 97.9}
    assert c[("base2new", "MaPLe", "dtd", 16, "new")] == {1: 59.0, 2: 59.6, 3: 60.2}
    # CoOp few-shot (Dassl <= 0.6.0: two decimals, "Finished training"); seed 2 resumed into log.txt-<time>
    assert c[("few_shot", "CoOp", "oxford_pets", 16, "acc")] == {1: 85.37, 2: 86.13}
    # cross-dataset / DG: the official xd layout; zero-shot CLIP without a seed folder
    assert c[("transfer", "MaPLe", "caltech101", None, "target")] == {1: 93.6}
    assert c[("transfer", "MaPLe", "imagenet", None, "source")] == {1: 70.8}
    assert c[("transfer", "CLIP", "imagenet", None, "source")] == {0: 66.7}  # unseeded: seed 0

    tables = {t.title.split(" (")[0].split(":")[0]: t for t in pr.build_tables(res, compare=True)}
    b2n = tables["Base-to-new generalisation"]
    cal = _row(b2n, "Caltech101", "MaPLe")
    assert cal[2].mean == pytest.approx(97.9) and cal[2].std == pytest.approx(math.sqrt(0.08 / 3))
    assert cal[3].mean == pytest.approx(94.4) and cal[3].std == pytest.approx(math.sqrt(0.14 / 3))
    assert cal[4] == pytest.approx(2 * 97.9 * 94.4 / (97.9 + 94.4))
    assert cal[5:8] == [97.74, 94.36, 96.02] and cal[10] == pytest.approx(cal[4] - 96.02)
    avg = _row(b2n, "Average", "MaPLe")  # HM of the averaged Base and New, not the mean of the HMs
    assert avg[2] == pytest.approx(89.25) and avg[3] == pytest.approx(77.0)
    assert avg[4] == pytest.approx(2 * 89.25 * 77.0 / (89.25 + 77.0))
    assert avg[8:11] == [None, None, None]  # 2 of 11 datasets: not compared with the paper's Average
    few = tables["Few-shot classification"]
    pets = _row(few, "OxfordPets", "CoOp")
    assert pets[2].mean == pytest.approx(85.75) and pets[2].std == pytest.approx(0.38)
    dg = tables["Domain generalisation"]
    clip = _row(dg, "CLIP")
    assert clip[1].mean == 66.7 and clip[dg.columns.index("ImageNet-R")].mean == 74.0
    assert _row(dg, "CLIP (published)")[1] == 66.73
    xd = tables["Cross-dataset transfer"]
    assert _row(xd, "MaPLe")[1].mean == 70.8 and _row(xd, "MaPLe Δ")[1] == pytest.approx(70.8 - 70.72)

    for fmt in ("terminal", "markdown", "latex", "csv"):
        text = pr.render(pr.build_tables(res, compare=True), fmt)
        assert "97.90" in text or "97.9" in text
    md = pr.render([b2n], "markdown")
    assert "| Caltech101 | MaPLe | 97.90 ± 0.16 | 94.40 ± 0.22 | 96.12 |" in md
    assert "\\begin{tabular}" in pr.render([b2n], "latex") and "$\\pm$" in pr.render([b2n], "latex")
    rows = list(csv.DictReader(io.StringIO(pr.render([b2n], "csv"))))
    hm = next(r for r in rows if r["dataset"] == "caltech101" and r["metric"] == "hm")
    assert float(hm["mean"]) == pytest.approx(2 * 97.9 * 94.4 / 192.3, abs=1e-4) and hm["published"] == "96.02"


def test_parse_results_cli(tmp_path, capsys):
    assert pr.main([os.path.join(FIX, "official_logs"), "--protocol", "base2new", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**Base-to-new") and "| Average | MaPLe | 89.25 | 77.00 | 82.67 |" in out
    assert pr.main([str(tmp_path)]) == 1


def test_parse_results_reports_datasets_it_does_not_know(tmp_path, capsys):
    """A user's own dataset (or the demo's) is reported under the name its run record gives, not skipped."""
    root = tmp_path / "out"
    for seed, acc in ((1, 80.0), (2, 82.0)):  # a sweep's runs: sweep.json names the dataset, done.json the log
        folder = root / "base2new" / "train_base" / "my_birds" / "shots_16" / "CoOp" / "vit_b16" / f"seed{seed}"
        write_log(str(folder), "CoOp", "vit_b16", "my_birds", seed, 16, acc, subsample="base")
        (folder / "sweep.json").write_text(json.dumps({"dataset": "my_birds", "trainer": "CoOp"}))
        (folder / "done.json").write_text(json.dumps({"accuracy": acc, "log": "log.txt"}))
    plain = root / "mine" / "seed1"  # a plain train.py run: the dataset yaml of its log
    write_log(str(plain), "CoOp", "vit_b16", "pond_frogs", 1, 4, 66.0)
    assert pr.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "my_birds" in out and "81.00" in out and "pond_frogs" in out and "skipped" not in out


def test_published_numbers_are_consistent():
    pub = pr.load_published()
    assert pub and all(src for _, src in pub.values())
    for m in ("CLIP", "CoOp", "CoCoOp", "MaPLe", "KgCoOp"):
        for metric in ("base", "new"):
            vals = [pub[("base2new", m, d, None, metric)][0] for d in B2N_DATASETS]
            assert sum(vals) / 11 == pytest.approx(pub[("base2new", m, "average", None, metric)][0], abs=0.011)
        for d in [*B2N_DATASETS, "average"]:
            b, n, h = (pub[("base2new", m, d, None, k)][0] for k in ("base", "new", "hm"))
            assert 2 * b * n / (b + n) == pytest.approx(h, abs=0.011)
    assert not any(k[1] in ("SEP", "ALIGN") for k in pub)  # not retrieved: none invented


# ----------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------

def write_log(folder, trainer, cfg, dataset, seed, shots, acc, subsample="all", eval_only=False):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log.txt"), "w") as f:
        f.write(f"** Arguments **\nconfig_file: configs/trainers/{trainer}/{cfg}.yaml\n"
                f"dataset_config_file: configs/datasets/{dataset}.yaml\neval_only: {eval_only}\nseed: {seed}\n"
                f"trainer: {trainer}\n** Config **\nDATASET:\n  NUM_SHOTS: {shots}\n  SUBSAMPLE_CLASSES: {subsample}\n"
                f"Collecting env info ...\n" + ("" if eval_only else "Finish training\n")
                + f"=> result\n* accuracy: {acc}%\n")


def test_plots_are_written(tmp_path):
    root = tmp_path / "out"
    for d, off in (("dtd", 0), ("eurosat", 10)):
        write_log(str(root / f"few_shot/{d}/shots_0/ZeroshotCLIP/vit_b16/seed1"), "ZeroshotCLIP", "vit_b16", d, 1, -1,
                  40 + off, eval_only=True)
        for k in (1, 2, 4, 8, 16):
            for s in (1, 2):
                write_log(str(root / f"few_shot/{d}/shots_{k}/CoOp/rn50/seed{s}"), "CoOp", "rn50", d, s, k,
                          40 + off + 3 * math.log2(k) + s)
    shutil.copytree(os.path.join(FIX, "official_logs", "output", "base2new"), root / "base2new")
    plots = tmp_path / "plots"
    assert plot_results.main([str(root), "--out", str(plots)]) == 0
    for name in ("few_shot.png", "few_shot.pdf", "base2new.png", "base2new.pdf"):
        assert (plots / name).stat().st_size > 1000, name
    series, _ = plot_results.few_shot_series(pr.collect(str(root)))
    assert series["CLIP"]["average"] == {0: (45.0, 0.0)}
    assert series["CoOp"]["average"][16][0] == pytest.approx(45 + 12 + 1.5)


# ----------------------------------------------------------------------------------------------------
# Chains of training stages (sweep data ``stages``; PLOT++'s two stages)
# ----------------------------------------------------------------------------------------------------

def test_stage_chains_are_planned_in_order_and_find_the_previous_stage():
    runs = plan("few_shot", "plotpp", ["caltech101"], [1, 2, 3], [1, 16], "/o", "/d")
    first = [r for r in runs if r.stage == "visiononly"]
    second = [r for r in runs if r.stage == "joint"]
    assert [r.out for r in first] == [f"/o/few_shot/caltech101/shots_{k}/PLOTPP/vit_visiononly/seed1" for k in (1, 16)]
    assert len(second) == 6 and len(runs) == 8  # stage 1 for seed 1 only, stage 2 for every seed
    for r in second:
        assert r.out == f"/o/few_shot/caltech101/shots_{r.shots}/PLOTPP/vit/seed{r.seed}"
        assert r.previous is r.depends_on and r.previous.shots == r.shots and r.previous.seed == 1
        assert runs.index(r.previous) < runs.index(r)
        argv = r.argv()
        assert argv[argv.index("TRAINER.PLOTPP.PRETRAIN_DIR") + 1] == r.previous.out
        assert argv[argv.index("TRAINER.PLOTPP.MODEL_UPD") + 1] == "joint" and "--config-file" in argv
    for r in first:
        assert r.previous is None and "TRAINER.PLOTPP.PRETRAIN_DIR" not in r.opts
        assert r.config_file == "configs/trainers/PLOTPP/vit_visiononly.yaml"
        assert r.opts[r.opts.index("TRAINER.PLOTPP.MODEL_UPD") + 1] == "vision"
    # evaluations load the last stage's model, with the last stage's eval_opts (not its PRETRAIN_DIR)
    b2n = plan("base2new", "plotpp", ["dtd"], [1, 2], [16], "/o", "/d")
    assert [(r.kind, r.stage, r.seed) for r in b2n] == [("train", "visiononly", 1), ("train", "joint", 1),
                                                         ("eval", "", 1), ("train", "joint", 2), ("eval", "", 2)]
    for ev in (r for r in b2n if r.kind == "eval"):
        assert ev.model.stage == "joint" and ev.argv()[ev.argv().index("--model-dir") + 1] == ev.model.out
        assert "TRAINER.PLOTPP.PRETRAIN_DIR" not in ev.opts and ev.opts[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "new"]
        assert ev.opts[ev.opts.index("TRAINER.PLOTPP.TRADE_OFF") + 1] == "False"
    xd = plan("cross_dataset", "plotpp", ["dtd"], [1], [16], "/o", "/d")
    assert [r.out.split("/o/")[1] for r in xd] == [
        "cross_dataset/train_source/imagenet/shots_16/PLOTPP/vit_visiononly/seed1",
        "cross_dataset/train_source/imagenet/shots_16/PLOTPP/vit/seed1",
        "cross_dataset/test_target/dtd/shots_16/PLOTPP/vit/seed1"]
    # the stage-1 runs are their own rows in the results tables
    from meta.methods import label_for

    assert label_for("PLOTPP", "vit_visiononly") == "PLOT++ (stage 1)" and label_for("PLOTPP", "vit") == "PLOT++"
    # SLURM: a shot count's whole chain (stage 1 and every seed's stage 2) is one job, in dependency order
    from tools.sweeps.slurm import chains

    groups = chains(plan("few_shot", "plotpp", ["caltech101"], [1, 2, 3], [1, 16], "/o", "/d"))
    chain = [("visiononly", 1)] + [("joint", s) for s in (1, 2, 3)]
    assert [[(r.stage, r.seed) for r in g] for g in groups] == [chain, chain]
    header = " ".join(line[2:] for line in expected_scripts()[os.path.join("plotpp", "base2new.sh")].splitlines()[1:9])
    assert "chain of 2 stages, run in order: visiononly (config vit_visiononly; seed 1 only" in header
    assert "TRAINER.PLOTPP.PRETRAIN_DIR <previous stage's folder>" in header
    assert "evaluations load the last stage's model" in header


def test_queue_runs_stage_chains_in_order(tmp_path, monkeypatch):
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "caltech101", "--seeds", "1 2", "--shots", "4", "--jobs", "3",
                                  protocol="few_shot", method="plotpp")
    assert code == 0, out
    by_out = {c["out"]: c for c in calls}
    root = tmp_path / "out" / "few_shot" / "caltech101" / "shots_4" / "PLOTPP"
    stage1 = by_out[str(root / "vit_visiononly" / "seed1")]
    for seed in (1, 2):
        stage2 = str(root / "vit" / f"seed{seed}")
        assert by_out[stage2]["start"] >= stage1["end"]  # after the stage it continues
        cmd = json.load(open(os.path.join(stage2, "sweep.json")))["command"]
        assert cmd[cmd.index("TRAINER.PLOTPP.PRETRAIN_DIR") + 1] == str(root / "vit_visiononly" / "seed1")
        record = json.load(open(os.path.join(stage2, "sweep.json")))
        assert record["previous_stage"] == str(root / "vit_visiononly" / "seed1")
    assert len(calls) == 3
    # a failed first stage blocks the later ones
    monkeypatch.setenv("FAKE_FAIL", "dtd")
    code, out, calls = fake_sweep(tmp_path, monkeypatch, "dtd", "--seeds", "1 2", "--shots", "4", protocol="few_shot",
                                  method="plotpp")
    blocked = "blocked few_shot/dtd/shots_4/PLOTPP/vit/seed2 (needs few_shot/dtd/shots_4/PLOTPP/vit_visiononly/seed1)"
    assert code == 1 and blocked in out
    assert len([c for c in calls if "/dtd/" in c["out"]]) == 1


def test_stage_data_is_checked(tmp_path):
    from meta.methods import MethodDataError, parse_method

    def method(stages):
        folder = tmp_path / "Foo"
        folder.mkdir(exist_ok=True)
        settings = "{cfg: a, source: test}"
        (folder / "method.yaml").write_text(
            f"trainer: Foo\nlabel: Foo\norder: 1\nofficial: none\ndemo: demo.yaml\nsweeps:\n  foo:\n"
            f"    stages: {stages}\n    base2new: {settings}\n    few_shot: {settings}\n    transfer: {settings}\n")
        return parse_method(str(folder / "method.yaml"))

    good = method("[{name: one, cfg: b, seeds: [1]}, {name: two, opts: [K, '{previous}'], eval_opts: [E, '1']}]")
    assert [s.name for s in good.sweeps["foo"].stages] == ["one", "two"]
    for bad, text in (("[{name: one}, {name: two}]", "its own config"),
                      ("[{name: one, cfg: b, opts: [K, '{previous}']}, {name: two}]", "no previous stage"),
                      ("[{name: one, cfg: b, seeds: [4]}, {name: two}]", "subset of the sweep's seeds"),
                      ("[{name: one, cfg: b, eval_opts: [E, '1']}, {name: two}]", "only the last stage"),
                      ("[{name: one, cfg: b, cfgs: x}, {name: two}]", "unknown key")):
        with pytest.raises(MethodDataError, match=text):
            method(bad)
