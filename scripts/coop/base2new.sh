#!/usr/bin/env bash
# CoOp, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the new
# classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/CoOp/method.yaml, sweeps.coop.base2new): KaiyangZhou/CoOp
# scripts/cocoop/base2new_{train,test}.sh with TRAINER=CoOp and the CFG lines they leave commented
# (vit_b16_ctxv1, ImageNet vit_b16_ep50_ctxv1); the load epoch is the config's MAX_EPOCH (that test script
# hard-codes CoCoOp's 10).
# Usage: DATA=/path/to/datasets bash scripts/coop/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/coop/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/CoOp/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new coop "$@"
