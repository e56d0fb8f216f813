#!/usr/bin/env bash
# PLOT, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/PLOT/method.yaml, sweeps.plot.few_shot): CHENGY12/PLOT plot-coop/scripts/main.sh
# DATASET 4 (N = 4 prompts as the README example, RN50, 16 context vectors, K in 1 2 4 8 16, seeds 1 2 3; the
# result is the test accuracy at the end of training; the trainer sets the epochs from the shots,
# 50/100/100/200/200 and ImageNet 50, and the train batch 32 for Flowers, Aircraft and Cars, as the official
# train.py does).
# Usage: DATA=/path/to/datasets bash scripts/plot/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/plot/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PLOT/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot plot "$@"
