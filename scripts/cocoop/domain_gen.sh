#!/usr/bin/env bash
# CoCoOp, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/CoCoOp/method.yaml, sweeps.cocoop.transfer): KaiyangZhou/CoOp
# scripts/cocoop/xd_{train,test}.sh (ImageNet, 16 shots, all classes; load epoch 10).
# Usage: DATA=/path/to/datasets bash scripts/cocoop/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/CoCoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen cocoop "$@"
