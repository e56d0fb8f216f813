#!/usr/bin/env bash
# SEP, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shot 4.
# Settings (configs/trainers/SEP/method.yaml, sweeps.sep.few_shot): htyao89/SEP scripts/run_few_shot.sh is a
# stale copy from another project; its intended run: the base-to-new configs and settings on all classes, 4
# shots (SHOTS="1 2 4 8 16" for curves).
# Usage: DATA=/path/to/datasets bash scripts/sep/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/sep/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/SEP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot sep "$@"
