#!/usr/bin/env bash
# CoOp, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/CoOp/method.yaml, sweeps.coop.transfer): KaiyangZhou/CoOp
# scripts/cocoop/xd_{train,test}.sh with TRAINER=CoOp and CFG=vit_b16_ep50_ctxv1 (the CoCoOp/MaPLe papers'
# CoOp rows); the same ImageNet model serves domain generalisation.
# Usage: DATA=/path/to/datasets bash scripts/coop/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/CoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen coop "$@"
