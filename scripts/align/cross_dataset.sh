#!/usr/bin/env bash
# ALIGN (official name MMP), cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate
# (eval-only) on the other 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/ALIGN/method.yaml, sweeps.align.transfer): not scripted for ALIGN; the field's
# protocol: ImageNet, 16 shots, all classes (20 epochs, set by the trainer as the official train.py does),
# evaluated on every target.
# Usage: DATA=/path/to/datasets bash scripts/align/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/ALIGN/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset align "$@"
