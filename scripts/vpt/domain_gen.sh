#!/usr/bin/env bash
# VPT (deep vision prompting), domain generalisation: the ImageNet model of cross_dataset (trained first if
# missing) evaluated on ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/VPT/method.yaml, sweeps.vpt.transfer): muzairkhattak/multimodal-prompt-learning
# scripts/vpt/xd_{train,test}_vpt.sh, loading the last epoch (5; the official test script asks for epoch 2,
# which is never saved).
# Usage: DATA=/path/to/datasets bash scripts/vpt/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/VPT/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen vpt "$@"
