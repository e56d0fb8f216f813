#!/usr/bin/env bash
# CoCoOp, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other
# 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/CoCoOp/method.yaml, sweeps.cocoop.transfer): KaiyangZhou/CoOp
# scripts/cocoop/xd_{train,test}.sh (ImageNet, 16 shots, all classes; load epoch 10).
# Usage: DATA=/path/to/datasets bash scripts/cocoop/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/CoCoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset cocoop "$@"
