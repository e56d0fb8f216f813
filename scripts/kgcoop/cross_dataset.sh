#!/usr/bin/env bash
# KgCoOp, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other
# 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/KgCoOp/method.yaml, sweeps.kgcoop.transfer): not scripted in the KgCoOp
# repository; the field's protocol: the base-to-new settings trained on ImageNet (16 shots, all classes),
# evaluated on every target.
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/KgCoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset kgcoop "$@"
