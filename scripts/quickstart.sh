#!/usr/bin/env bash
# The main job on a fresh machine, offline and on CPU: base-to-new prompt tuning (CoOp) next to zero-shot
# CLIP, on a generated toy dataset with a tiny random CLIP (numbers are those of a random model; with
# real weights and data use the commands in the README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
OUT=${OUT:-output/quickstart}
"$PY" tools/toy.py "$OUT/toy"
common=(--root "$OUT/toy/data" --seed 1 --dataset-config-file configs/datasets/caltech101.yaml
        --config-file configs/trainers/CoOp/vit_b32.yaml)
opts=(MODEL.BACKBONE.NAME custom MODEL.BACKBONE.PATH "$OUT/toy/tiny_vit.pt" INPUT.SIZE "(32, 32)"
      DATALOADER.NUM_WORKERS 0 DATASET.NUM_SHOTS 8 TRAINER.COOP.PREC fp32 TRAINER.COOP.N_CTX 4)
for split in base new; do
  "$PY" train.py "${common[@]}" --trainer ZeroshotCLIP --output-dir "$OUT/zsclip/$split" --eval-only \
    "${opts[@]}" DATASET.SUBSAMPLE_CLASSES $split > /dev/null
done
"$PY" train.py "${common[@]}" --trainer CoOp --output-dir "$OUT/coop/base" "${opts[@]}" \
  DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH 10 DATALOADER.TRAIN_X.BATCH_SIZE 8 > /dev/null
"$PY" train.py "${common[@]}" --trainer CoOp --output-dir "$OUT/coop/new" --eval-only \
  --model-dir "$OUT/coop/base" --load-epoch 10 "${opts[@]}" DATASET.SUBSAMPLE_CLASSES new > /dev/null
acc() { grep -h "^\* accuracy" "$1"/log.txt* | tail -n 1 | sed 's/\* accuracy: //'; }
printf "%-14s %8s %8s\n" method base new
for m in zsclip coop; do printf "%-14s %8s %8s\n" "$m" "$(acc "$OUT/$m/base")" "$(acc "$OUT/$m/new")"; done
