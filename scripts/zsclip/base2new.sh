#!/usr/bin/env bash
# Zero-shot CLIP, evaluate zero-shot on the base and on the new classes; seed 1.
# Settings (tools/sweep.py, METHODS["zsclip"]["base2new"]): KaiyangZhou/CoOp scripts/coop/zeroshot.sh
# (eval-only, one template per dataset) on the base and on the new classes, as the CoCoOp paper's CLIP row.
# Usage: DATA=/path/to/datasets bash scripts/zsclip/base2new.sh DATASET... | all  [sweep options] [-- KEY VALUE...]
#   env SEEDS, SHOTS, OUTPUT (default output/), OPTS ("KEY VALUE ..."), CFG, GPUS (0,1,...), JOBS;
#   options: python tools/sweep.py --help (--gpus, --slurm..., --dry-run). Rerun to resume.
exec "${PYTHON:-python3}" "$(dirname "$0")/../../tools/sweep.py" base2new zsclip "$@"
