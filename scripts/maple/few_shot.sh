#!/usr/bin/env bash
# MaPLe, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/MaPLe/method.yaml, sweeps.maple.few_shot): not scripted in the MaPLe repository;
# as wds2014/ALIGN scripts/maple/fst.sh runs MaPLe: the base-to-new config on all classes, K in 1 2 4 8 16.
# Usage: DATA=/path/to/datasets bash scripts/maple/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/maple/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/MaPLe/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot maple "$@"
