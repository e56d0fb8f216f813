#!/usr/bin/env bash
# PromptSRC, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated
# on ImageNet-V2, ImageNet-Sketch, ImageNet-A and ImageNet-R; seeds 1 2 3.
# Settings (configs/trainers/PromptSRC/method.yaml, sweeps.promptsrc.transfer): muzairkhattak/PromptSRC
# scripts/promptsrc/xd_{train,test}.sh (ImageNet, 16 shots, load epoch 20; the same model for domain
# generalisation), with the shipped vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets (depth 3, GPA mean 6 / std
# 10): both scripts name vit_b16_c2_ep5_batch4_4+4ctx_cross_datasets, which the repository does not have
# (reproduce_xd.sh and docs/EVAL.md use the ep20 one).
# Usage: DATA=/path/to/datasets bash scripts/promptsrc/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Generated from configs/trainers/PromptSRC/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen promptsrc "$@"
