#!/usr/bin/env bash
# Zero-shot CLIP, cross-dataset transfer: evaluate zero-shot on ImageNet and on the other 10 datasets; seed 1.
# Settings (configs/trainers/ZeroshotCLIP/method.yaml, sweeps.zsclip.transfer): KaiyangZhou/CoOp
# scripts/coop/zeroshot.sh on ImageNet and on every target.
# Usage: DATA=/path/to/datasets bash scripts/zsclip/cross_dataset.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/ZeroshotCLIP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" cross_dataset zsclip "$@"
