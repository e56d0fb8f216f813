#!/usr/bin/env bash
# TCP, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the new
# classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/TCP/method.yaml, sweeps.tcp.base2new):
# htyao89/Textual-based_Class-aware_prompt_tuning scripts/base2new_train.sh (trains and tests; N_CTX 4, W 1.0,
# which TCP does not use; vit_b16_ep100_ctxv1 = 50 epochs, Adam eps 1e-3 as the README's Dassl edit; ImageNet
# and SUN397 25 epochs, forced by its train.py; load epoch 50 / 25).
# Usage: DATA=/path/to/datasets bash scripts/tcp/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/tcp/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/TCP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new tcp "$@"
