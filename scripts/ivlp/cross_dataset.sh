#!/usr/bin/env bash
# IVLP, cross-dataset transfer: train on ImageNet (16 shots, all classes), evaluate (eval-only) on the other
# 10 datasets; seeds 1 2 3.
# Settings (configs/trainers/IVLP/method.yaml, sweeps.ivlp.transfer): muzairkhattak/multimodal-prompt-learning
# scripts/independent-vlp/xd_{train,test}_ivlp.sh, loading the last epoch (5; the official test script asks
# for epoch 2, which is never saved).
# Usage: DATA=/path/to/datasets bash scripts/ivlp/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/IVLP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset ivlp "$@"
