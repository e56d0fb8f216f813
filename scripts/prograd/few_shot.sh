#!/usr/bin/env bash
# ProGrad, few-shot classification: per dataset and shot count K, train on all classes with K images per
# class; seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/ProGrad/method.yaml, sweeps.prograd.few_shot): BeierZhu/Prompt-align
# ProGrad.public/scripts/prograd.sh DATASET CFG end 16 SHOTS False (RN50, M=16, LAMBDA 1.0, all classes) with
# its README's configs: rn50_ep50 for 1 shot, rn50_ep100 for 2 and 4, rn50 for 8 and 16. ImageNet is not
# stated there: rn50_ep50 for every shot count (CoOp's convention, an assumption). The paper's 8- and 16-shot
# Flowers102, DTD and EuroSAT runs use LAMBDA 0.8 (README): run those with -- LOSS.LAMBDA 0.8.
# Usage: DATA=/path/to/datasets bash scripts/prograd/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/prograd/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/ProGrad/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot prograd "$@"
