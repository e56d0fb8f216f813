#!/usr/bin/env bash
# IVLP, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the new
# classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/IVLP/method.yaml, sweeps.ivlp.base2new): muzairkhattak/multimodal-prompt-learning
# scripts/independent-vlp/base2new_{train,test}_ivlp.sh (load epoch 5).
# Usage: DATA=/path/to/datasets bash scripts/ivlp/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/ivlp/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/IVLP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new ivlp "$@"
