#!/usr/bin/env bash
# ALIGN (official name MMP), base-to-new generalisation: per dataset, train on the base classes (16 shots) and
# evaluate on the new classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/ALIGN/method.yaml, sweeps.align.base2new): wds2014/ALIGN
# scripts/mmp/base_to_new_{train,test}.sh (sun397.yaml for SUN397 as its commented line says; seeds 1 2 3 and
# the last epoch (20) are the field's convention, the released test script loads epoch 15, which is never
# saved).
# Usage: DATA=/path/to/datasets bash scripts/align/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/align/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ALIGN/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new align "$@"
