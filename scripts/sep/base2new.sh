#!/usr/bin/env bash
# SEP, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the new
# classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/SEP/method.yaml, sweeps.sep.base2new): htyao89/SEP scripts/base2new_train.sh
# (N_CTX 6, N_CTX_V 4, L_IND 0, W 8.0, W_V 6.0; vit_b32_ep50_ctxv1, ImageNet and SUN397 vit_b128_ep10_ctxv1;
# load epoch 50 / 10).
# Usage: DATA=/path/to/datasets bash scripts/sep/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/sep/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/SEP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new sep "$@"
