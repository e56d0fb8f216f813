#!/usr/bin/env bash
# PLOT++, base-to-new generalisation: per dataset, train on the base classes (16 shots) and evaluate on the
# new classes (eval-only, last epoch); seeds 1 2 3.
# Each training is a chain of 2 stages, run in order: visiononly (config vit_visiononly; seed 1 only; the
# other seeds continue from seed 1's run; TRAINER.PLOTPP.MODEL_UPD vision TRAINER.PLOTPP.TRADE_OFF True), then
# joint (TRAINER.PLOTPP.MODEL_UPD joint TRAINER.PLOTPP.TRADE_OFF False TRAINER.PLOTPP.PRETRAIN_DIR <previous
# stage's folder>); evaluations load the last stage's model with TRAINER.PLOTPP.MODEL_UPD joint
# TRAINER.PLOTPP.TRADE_OFF False.
# Settings (configs/trainers/PLOTPP/method.yaml, sweeps.plotpp.base2new): not scripted for PLOT++ (no
# base-to-new script; no base-to-new number in any revision of plot-pp/README.md; marked as ours); the
# README's two-stage settings (M = N = 4) in the field's protocol: both stages on the base classes, 16 shots
# (200 epochs by the official rule), the stage-2 models evaluated on the new classes with the options of
# evaluation.sh.
# Usage: DATA=/path/to/datasets bash scripts/plotpp/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
# Offline demo (CPU, no download): DEMO=1 bash scripts/plotpp/base2new.sh synthetic_shapes (the demo configs and CLIP).
# Generated from configs/trainers/PLOTPP/method.yaml by `python tools/sweep.py --write-scripts` (edit that file).
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new plotpp "$@"
