#!/usr/bin/env bash
# ProGrad, base-to-new generalisation: per dataset, train on the base classes (4 shots) and evaluate on the
# new classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd.base2new): BeierZhu/Prompt-align
# ProGrad.public/scripts/base2new_{train,test}_prograd.sh DATASET (RN50, 4 shots, rn50_ep100, M=16, LAMBDA
# 1.0, load epoch 100; ImageNet rn50_ep50 and epoch 50 as its README says). This is the official protocol; the
# ViT-B/16 16-shot numbers other papers list for ProGrad are the prograd_vit sweep.
# Usage: DATA=/path/to/datasets bash scripts/prograd/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/prograd/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new prograd "$@"
