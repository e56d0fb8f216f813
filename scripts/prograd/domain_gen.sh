#!/usr/bin/env bash
# ProGrad, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd.transfer): BeierZhu/Prompt-align
# ProGrad.public/scripts/eval.sh TARGET rn50_ep50 with TRAINER=ProGrad (domain generalisation: the ImageNet
# model of prograd.sh imagenet rn50_ep50 end 16 4 False, 4 shots, evaluated on the ImageNet variants);
# cross-dataset transfer has no official script and uses the same ImageNet model.
# Usage: DATA=/path/to/datasets bash scripts/prograd/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen prograd "$@"
