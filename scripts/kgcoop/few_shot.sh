#!/usr/bin/env bash
# KgCoOp, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shot 4.
# Settings (configs/trainers/KgCoOp/method.yaml, sweeps.kgcoop.few_shot): htyao89/KgCoOp scripts/xd_train.sh
# (despite its name the few-shot run: 4 shots, all classes, W=8.0).
# Usage: DATA=/path/to/datasets bash scripts/kgcoop/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/kgcoop/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/KgCoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot kgcoop "$@"
