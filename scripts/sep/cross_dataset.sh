#!/usr/bin/env bash
# SEP, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other 10
# datasets; seeds 1 2 3.
# Settings (configs/trainers/SEP/method.yaml, sweeps.sep.transfer): htyao89/SEP scripts/run_cross_dataset.sh
# (load epoch 3); no domain generalisation script: the same ImageNet model on the four ImageNet variants.
# Usage: DATA=/path/to/datasets bash scripts/sep/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/SEP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset sep "$@"
