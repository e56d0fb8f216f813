#!/usr/bin/env bash
# TCP, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/TCP/method.yaml, sweeps.tcp.transfer): not scripted in the TCP repository (issue
# #5 unanswered); the field's protocol: the base-to-new settings trained on ImageNet (16 shots, all classes;
# 25 epochs, forced by the official train.py), evaluated on every target.
# Usage: DATA=/path/to/datasets bash scripts/tcp/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/TCP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen tcp "$@"
