#!/usr/bin/env bash
# The main job on a fresh machine, offline and on CPU (about 1 min on 2 cores): base-to-new prompt tuning
# with SEP on the SyntheticShapes benchmark (datasets/synthetic_world.py, generated here), using the small CLIP
# pretrained on it (data/demo_clip/), next to zero-shot CLIP and CoOp. Train on the 16 base classes with
# 16 shots each, evaluate on the base test set and on the 16 new classes, print Base / New / HM.
# The same command lines run on real data with real CLIP weights (see the README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
OUT=${OUT:-output/quickstart}
SEED=${SEED:-1}
start=$(date +%s)
rm -rf "${OUT:?}/runs"
mkdir -p "$OUT/runs"

run() {  # run NAME TRAINER ARGS...: train.py with the demo configs; its output goes to $OUT/runs/NAME.out
  local name=$1 trainer=$2 config_dir=$2
  shift 2
  [ "$trainer" = ZeroshotCLIP ] && config_dir=CoOp
  if ! "$PY" train.py --root "$OUT/data" --seed "$SEED" --trainer "$trainer" --output-dir "$OUT/runs/$name" \
      --dataset-config-file configs/datasets/synthetic_shapes.yaml \
      --config-file "configs/trainers/$config_dir/demo.yaml" "$@" DATASET.NUM_SHOTS 16 \
      > "$OUT/runs/$name.out" 2>&1; then
    tail -n 20 "$OUT/runs/$name.out"
    echo "quickstart: $name failed; full output in $OUT/runs/$name.out" >&2
    exit 1
  fi
}
epochs() { sed -n 's/.*MAX_EPOCH: \([0-9]*\).*/\1/p' "configs/trainers/$1/demo.yaml"; }

echo "zero-shot CLIP: base and new classes"
run zsclip_base ZeroshotCLIP --eval-only DATASET.SUBSAMPLE_CLASSES base
run zsclip_new ZeroshotCLIP --eval-only DATASET.SUBSAMPLE_CLASSES new
for m in CoOp SEP; do
  echo "$m: training on the base classes ($(epochs $m) epochs), then evaluating base and new"
  run "${m}_base" "$m" DATASET.SUBSAMPLE_CLASSES base
  run "${m}_new" "$m" --eval-only --model-dir "$OUT/runs/${m}_base" --load-epoch "$(epochs $m)" \
    DATASET.SUBSAMPLE_CLASSES new
done

acc() { sed -n 's/^\* accuracy: \([0-9.]*\)%$/\1/p' "$OUT/runs/$1/log.txt" | tail -n 1; }
echo
echo "SyntheticShapes, base-to-new, 16 shots, seed $SEED (CLIP: data/demo_clip/synthetic_clip.pt; logs: $OUT/runs)"
printf "%-16s %6s %6s %6s\n" method Base New HM
for m in zsclip CoOp SEP; do
  b=$(acc "${m}_base") n=$(acc "${m}_new")
  label=$m
  [ "$m" = zsclip ] && label="zero-shot CLIP"
  awk -v l="$label" -v b="$b" -v n="$n" 'BEGIN { printf "%-16s %6.1f %6.1f %6.1f\n", l, b, n, 2 * b * n / (b + n) }'
done
echo "($(($(date +%s) - start)) s)"
