#!/usr/bin/env bash
# Zero-shot CLIP, base-to-new generalisation: evaluate zero-shot on the base and on the new classes; seed 1.
# Settings (configs/trainers/ZeroshotCLIP/method.yaml, sweeps.zsclip.base2new): KaiyangZhou/CoOp
# scripts/coop/zeroshot.sh (eval-only, one template per dataset) on the base and on the new classes, as the
# CoCoOp paper's CLIP row.
# Usage: DATA=/path/to/datasets bash scripts/zsclip/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/zsclip/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ZeroshotCLIP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new zsclip "$@"
