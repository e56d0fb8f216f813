#!/usr/bin/env bash
# ProGrad, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd_vit.transfer): not an official protocol: the
# field's ViT-B/16 transfer protocol (train on ImageNet, 16 shots, all classes, vit_b16_ep50; evaluate on
# every target) with the prograd_vit settings.
# Usage: DATA=/path/to/datasets bash scripts/prograd_vit/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen prograd_vit "$@"
