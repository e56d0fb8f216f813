#!/usr/bin/env bash
# CoCoOp, domain generalisation: the ImageNet model of cross_dataset (trained first if missing) evaluated on
# ImageNet-V2, -Sketch, -A and -R; seeds 1 2 3.
# Settings (tools/sweep.py, METHODS["cocoop"]["transfer"]): KaiyangZhou/CoOp
# scripts/cocoop/xd_{train,test}.sh (ImageNet, 16 shots, all classes; load epoch 10).
# Usage: DATA=/path/to/datasets bash scripts/cocoop/domain_gen.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" domain_gen cocoop "$@"
