#!/usr/bin/env bash
# PLOT, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the new
# classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/PLOT/method.yaml, sweeps.plot.base2new): not scripted for PLOT (no base-to-new
# script or number in the release, marked as ours); the field's protocol on the settings of the official
# few-shot script: 16 shots, train on the base classes (200 epochs by the official rule), evaluate on the new
# classes (eval-only, last epoch).
# Usage: DATA=/path/to/datasets bash scripts/plot/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/plot/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PLOT/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new plot "$@"
