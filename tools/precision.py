"""Precision modes side by side on the demo benchmark, measured in one run: each trainer's demo config
(SyntheticShapes and the demo CLIP, offline) trained on the base classes and evaluated on the base and new
classes in every precision mode it declares: fp32; fp16 (OpenAI's storage: fp16 weights and activations,
fp32 LayerNorm); amp with fp16 and with bf16 autocast (fp32 master weights).

    python tools/precision.py                                   # CoOp, SEP and ALIGN, every mode they declare
    python tools/precision.py --trainers MaPLe --modes fp32 amp-bf16 --seeds 1 2 3

Prints Base / New / HM (mean over the seeds) and the wall time of the training runs (start-up and the base
evaluation included) relative to fp32. On a CPU the times say how slow half precision is there (few CPUs
have fast fp16 kernels); run it on a GPU for the figures that matter for speed. Accuracy differences between
modes are the effect of the precision on this benchmark (the demo CLIP is small and 16 shots are few, so
differences under ~1 point are within seed noise: compare with --seeds).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from meta.methods import PRECISION_MODES, method_of, precision_opts  # noqa: E402
from meta.runs import RESULT_RE  # noqa: E402
from tools import REPO  # noqa: E402

DATASET_CONFIG = os.path.join("configs", "datasets", "synthetic_shapes.yaml")


def _config_node(trainer):
    import trainers  # noqa: F401  (registers the trainers)
    from engine.trainer import TRAINER_REGISTRY

    return TRAINER_REGISTRY.get(trainer).config_node


def _load_epoch(argv):
    from tools.train_config import resolve_config

    return resolve_config(argv).OPTIM.MAX_EPOCH


def _run(argv, log_path):
    """train.py ARGV with its output in LOG_PATH: (accuracy of its last evaluation, wall seconds)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.run([sys.executable, "train.py", *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    text = open(log_path).read()
    found = RESULT_RE.findall(text)
    if rc != 0 or not found:
        last = text.strip().splitlines()[-1] if text.strip() else ""
        raise SystemExit(f"precision: train.py failed (exit {rc}): {last}; full output in {log_path}")
    return float(found[-1]), seconds


def measure(trainer, mode, seed, args):
    method = method_of(trainer)
    out = os.path.join(args.out, "runs", f"{trainer}_{mode}_seed{seed}")
    os.makedirs(out, exist_ok=True)
    common = ["--root", args.root, "--seed", str(seed), "--trainer", trainer, "--dataset-config-file", DATASET_CONFIG,
              "--config-file", os.path.relpath(method.demo_config, REPO)]
    opts = ["DATASET.NUM_SHOTS", str(args.shots), *precision_opts(_config_node(trainer), mode)]
    train_argv = [*common, "--output-dir", os.path.join(out, "base"), *opts, "DATASET.SUBSAMPLE_CLASSES", "base"]
    base, seconds = _run(train_argv, os.path.join(out, "base.out"))
    new, _ = _run([*common, "--output-dir", os.path.join(out, "new"), "--eval-only",
                   "--model-dir", os.path.join(out, "base"), "--load-epoch", str(_load_epoch(train_argv)),
                   *opts, "DATASET.SUBSAMPLE_CLASSES", "new"], os.path.join(out, "new.out"))
    return base, new, seconds


def hm(base, new):
    return 2 * base * new / (base + new) if base + new else 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainers", nargs="+", default=["CoOp", "SEP", "ALIGN"])
    ap.add_argument("--modes", nargs="+", default=list(PRECISION_MODES), choices=list(PRECISION_MODES),
                    help="precision modes (each trainer runs those its method data declares)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--root", default=os.path.join("output", "quickstart", "data"),
                    help="dataset root (the benchmark writes itself there on first use)")
    ap.add_argument("--out", default=os.path.join("output", "precision"))
    args = ap.parse_args(argv)
    args.root, args.out = os.path.abspath(args.root), os.path.abspath(args.out)
    for trainer in args.trainers:
        if method_of(trainer) is None:
            raise SystemExit(f"precision: unknown trainer {trainer!r}; expected one with configs/trainers/<T>/method.yaml")

    rows = []
    for trainer in args.trainers:
        modes = [m for m in args.modes if m in method_of(trainer).precision_modes]
        for mode in modes:
            runs = [measure(trainer, mode, seed, args) for seed in args.seeds]
            base, new, seconds = (statistics.mean(r[i] for r in runs) for i in range(3))
            rows.append((trainer, mode, base, new, hm(base, new), seconds))
            print(f"{trainer} {mode}: base {base:.1f} new {new:.1f} ({seconds:.0f} s)", flush=True)

    print(f"\nSyntheticShapes base-to-new, {args.shots} shots, seeds {' '.join(map(str, args.seeds))} "
          f"(wall time of the training run, mean over seeds)")
    print(f"{'trainer':<10} {'mode':<9} {'Base':>6} {'New':>6} {'HM':>6} {'train s':>8} {'x fp32':>7}")
    fp32 = {r[0]: r[5] for r in rows if r[1] == "fp32"}
    for trainer, mode, base, new, h, seconds in rows:
        ratio = f"{seconds / fp32[trainer]:.2f}" if trainer in fp32 else "-"
        print(f"{trainer:<10} {mode:<9} {base:6.1f} {new:6.1f} {h:6.1f} {seconds:8.0f} {ratio:>7}")


if __name__ == "__main__":
    main()
