#!/usr/bin/env bash
# Zero-shot CLIP, few-shot classification: zero-shot accuracy on all classes (the 0-shot point of the curves);
# seed 1.
# Settings (configs/trainers/ZeroshotCLIP/method.yaml, sweeps.zsclip.few_shot): KaiyangZhou/CoOp
# scripts/coop/zeroshot.sh on all classes: the 0-shot point of the few-shot curves (ViT-B/16 like the other
# methods; CFG=rn50 for the CoOp paper's RN50 curves).
# Usage: DATA=/path/to/datasets bash scripts/zsclip/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/zsclip/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ZeroshotCLIP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot zsclip "$@"
