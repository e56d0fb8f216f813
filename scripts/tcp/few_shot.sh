#!/usr/bin/env bash
# TCP, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shot 4.
# Settings (configs/trainers/TCP/method.yaml, sweeps.tcp.few_shot): no official script; the maintainer (issue
# #7 of the TCP repository): the base-to-new training command without SUBSAMPLE_CLASSES base, 4 shots as in
# the paper's few-shot table (SHOTS="1 2 4 8 16" for curves; ImageNet and SUN397 25 epochs).
# Usage: DATA=/path/to/datasets bash scripts/tcp/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/tcp/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/TCP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot tcp "$@"
