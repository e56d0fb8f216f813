#!/usr/bin/env bash
# The main job on a fresh machine, offline and on CPU (70 s on 2 idle cores): base-to-new
# prompt tuning on the SyntheticShapes benchmark (datasets/synthetic_world.py, generated here) with the small
# CLIP pretrained on it (data/demo_clip/). CoOp, SEP and ALIGN train on the 16 base classes (circles and squares,
# 16 shots each); they and zero-shot CLIP are evaluated on the base test set and on the 16 new classes
# (triangles and stars); the table is tools/parse_results.py's Base / New / HM, mean (± std) over the seeds.
# Each method is its base-to-new sweep in demo mode (tools/sweep.py --demo, the trainers' demo.yaml): the same
# commands run on real data with real CLIP weights (see the README).
#   SEEDS="1 2 3" bash scripts/quickstart.sh    more seeds (default 1)
#   ALL=1 bash scripts/quickstart.sh            every method with sweep settings (its method data), one table
#   (or --all)
#   env OUT (default output/quickstart), JOBS (sweeps at once, default 2), PYTHON
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=${PYTHON:-python3}
OUT=${OUT:-output/quickstart}
SEEDS=${SEEDS:-1}
JOBS=${JOBS:-2}
# one torch thread per run: JOBS runs share the cores, and oversubscribed OpenMP threads spin (with 2 runs of
# 2 threads each on 2 cores the CoOp run took 13 min instead of ~1)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ALL=${ALL:-0}
[ "${1:-}" = --all ] && ALL=1
start=$(date +%s)

sweeps="zsclip coop sep align"
if [ "$ALL" = 1 ]; then  # the first sweep of every method that has one, in table order
  sweeps=$("$PY" -c "from meta.methods import all_methods
print(' '.join(next(iter(m.sweeps)) for m in all_methods().values() if m.sweeps))")
fi
rm -rf "${OUT:?}/base2new"
"$PY" tools/synthetic.py --root "$OUT/data" --if-needed > /dev/null
echo "base-to-new on SyntheticShapes, seeds $SEEDS: $sweeps (logs: $OUT/base2new)"
sweep() {  # sweep KEY: its base-to-new runs in demo mode; output and exit status in $OUT/sweep_KEY.{txt,rc}
  local rc=0
  "$PY" tools/sweep.py base2new "$1" synthetic_shapes --demo --output "$OUT" --root "$OUT/data" --seeds "$SEEDS" \
    --shots 16 --jobs 1 --launch fork --no-table > "$OUT/sweep_$1.txt" 2>&1 || rc=$?
  echo "$rc" > "$OUT/sweep_$1.rc"
}
for s in $sweeps; do  # JOBS sweeps at a time
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  echo "  $s"
  sweep "$s" &
done
wait
for s in $sweeps; do
  if [ "$(cat "$OUT/sweep_$s.rc")" != 0 ]; then
    tail -n 20 "$OUT/sweep_$s.txt"
    echo "quickstart: the $s sweep failed; its output is in $OUT/sweep_$s.txt" >&2
    exit 1
  fi
done
echo
"$PY" tools/parse_results.py "$OUT" --protocol base2new --dataset synthetic_shapes
echo "(CLIP: data/demo_clip/synthetic_clip.pt; $(($(date +%s) - start)) s)"
