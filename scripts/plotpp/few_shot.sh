#!/usr/bin/env bash
# PLOT++, few-shot classification: per dataset and shot count K, train on all classes with K images per class;
# seeds 1 2 3, shots 1 2 4 8 16.
# Each training is a chain of 2 stages, run in order: visiononly (config vit_visiononly; seed 1 only; the
# other seeds continue from seed 1's run; TRAINER.PLOTPP.MODEL_UPD vision TRAINER.PLOTPP.TRADE_OFF True), then
# joint (TRAINER.PLOTPP.MODEL_UPD joint TRAINER.PLOTPP.TRADE_OFF False TRAINER.PLOTPP.PRETRAIN_DIR <previous
# stage's folder>).
# Settings (configs/trainers/PLOTPP/method.yaml, sweeps.plotpp.few_shot): CHENGY12/PLOT
# plot-pp/scripts/main_visiononly.sh and main_joint.sh DATASET 4 (M = 4 as the README tables, N = 4, N_CTX_V
# 2, template contexts; K in 1 2 4 8 16; stage 1 seed 1, stage 2 seeds 1 2 3 from that shot count's stage-1
# model, the protocol the scripts intend with one PRETRAIN_DIR per shot; the result is the stage-2 test
# accuracy at the end of training, which evaluation.sh reproduces; epochs 50/100/100/200/200, ImageNet 50, set
# by the trainer as the official train.py does).
# Usage: DATA=/path/to/datasets bash scripts/plotpp/few_shot.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/plotpp/few_shot.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PLOTPP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" few_shot plotpp "$@"
