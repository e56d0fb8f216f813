#!/usr/bin/env bash
# ProGrad, few-shot classification: per dataset and shot count K, train on all classes with K images per
# class; seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd_vit.few_shot): not an official protocol (the
# official few-shot runs are RN50: the prograd sweep): the ViT-B/16 variant of the prograd_vit base-to-new
# configs, all classes, 50 epochs for 1 shot and for ImageNet, else 100 (an assumption; no published ViT-B/16
# few-shot setting).
# Usage: DATA=/path/to/datasets bash scripts/prograd_vit/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/prograd_vit/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot prograd_vit "$@"
