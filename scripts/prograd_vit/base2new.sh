#!/usr/bin/env bash
# ProGrad, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the
# new classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd_vit.base2new): not an official protocol: the
# ViT-B/16, 16-shot base-to-new setting in which later papers list ProGrad (e.g. the KgCoOp README, 82.48 /
# 70.75 / 76.16), re-runs by other authors whose configs are unpublished. Assumed here: the official
# base-to-new settings (rn50_ep100 values, M=16, LAMBDA 1.0; ImageNet 50 epochs) with ViT-B/16 (vit_b16_ep100
# / vit_b16_ep50).
# Usage: DATA=/path/to/datasets bash scripts/prograd_vit/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/prograd_vit/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new prograd_vit "$@"
