#!/usr/bin/env bash
# CoCoOp, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the
# new classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/CoCoOp/method.yaml, sweeps.cocoop.base2new): KaiyangZhou/CoOp
# scripts/cocoop/base2new_{train,test}.sh (load epoch 10).
# Usage: DATA=/path/to/datasets bash scripts/cocoop/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/cocoop/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/CoCoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new cocoop "$@"
