#!/usr/bin/env bash
# MaPLe, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other
# 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/MaPLe/method.yaml, sweeps.maple.transfer):
# muzairkhattak/multimodal-prompt-learning scripts/maple/xd_{train,test}_maple.sh (load epoch 2); the same
# model for domain generalisation.
# Usage: DATA=/path/to/datasets bash scripts/maple/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/MaPLe/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset maple "$@"
