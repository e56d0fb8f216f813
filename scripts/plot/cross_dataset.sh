#!/usr/bin/env bash
# PLOT, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other
# 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/PLOT/method.yaml, sweeps.plot.transfer): not scripted for PLOT (no cross-dataset
# or domain-generalisation script or number in the release, marked as ours); the field's protocol on the
# official few-shot settings: ImageNet, 16 shots, all classes (50 epochs by the official rule), evaluated on
# every target; the global term is added only where DATASET.NAME is ImageNet, as officially (not on the
# targets, not on the ImageNet variants).
# Usage: DATA=/path/to/datasets bash scripts/plot/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/PLOT/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset plot "$@"
