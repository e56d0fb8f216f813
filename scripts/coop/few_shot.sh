#!/usr/bin/env bash
# CoOp, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/CoOp/method.yaml, sweeps.coop.few_shot): KaiyangZhou/CoOp scripts/coop/main.sh
# DATASET CFG end 16 SHOTS False (RN50, M=16, unified context): rn50_ep50 for 1 shot, rn50_ep100 for 2 and 4,
# rn50 for 8 and 16, rn50_ep50 for every shot count on ImageNet (COOP.md).
# Usage: DATA=/path/to/datasets bash scripts/coop/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/coop/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/CoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot coop "$@"
