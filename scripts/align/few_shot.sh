#!/usr/bin/env bash
# ALIGN (official name MMP), few-shot classification: per dataset and shot count K, train on all classes with
# K images per class; seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/ALIGN/method.yaml, sweeps.align.few_shot): not scripted for ALIGN; as the
# repository's MaPLe loop scripts/maple/fst.sh: all classes, K in 1 2 4 8 16 (the trainer sets the epochs from
# the shots as the official train.py does).
# Usage: DATA=/path/to/datasets bash scripts/align/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/align/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ALIGN/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot align "$@"
