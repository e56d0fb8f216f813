#!/usr/bin/env bash
# PromptSRC, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the
# new classes (eval-only, last epoch); seeds 1 2 3.
# Settings (configs/trainers/PromptSRC/method.yaml, sweeps.promptsrc.base2new): muzairkhattak/PromptSRC
# scripts/promptsrc/base2new_{train,test}.sh (vit_b16_c2_ep20_batch4_4+4ctx, GPA mean 15 / std 1, load epoch
# 20).
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/promptsrc/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PromptSRC/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new promptsrc "$@"
