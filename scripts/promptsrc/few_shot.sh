#!/usr/bin/env bash
# PromptSRC, few-shot classification: per dataset and shot count K, train on all classes with K images per
# class; seeds 1 2 3, shots 1 2 4 8 16.
# Settings (configs/trainers/PromptSRC/method.yaml, sweeps.promptsrc.few_shot): muzairkhattak/PromptSRC
# scripts/promptsrc/few_shot.sh (vit_b16_c2_ep50_batch4_4+4ctx_few_shot, 50 epochs, all classes, K in 1 2 4 8
# 16) with the per-dataset GPA of that yaml's comment: mean 30 / std 30 for ImageNet, Caltech101, OxfordPets,
# Food101, UCF101, SUN397, mean 45 / std 5 (our _gpa45 yaml) for StanfordCars, Flowers102, FGVCAircraft, DTD,
# EuroSAT (the shipped file alone gives 30 / 30 everywhere; CFG=vit_b16_c2_ep50_batch4_4+4ctx_few_shot runs it
# as shipped).
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/promptsrc/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PromptSRC/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot promptsrc "$@"
