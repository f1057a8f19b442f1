#!/usr/bin/env bash
# Trains the issue-13 students of one dataset (and a second teacher for stacking), each capped
# at $CAP minutes of training (train.max_minutes), one thread each, under the shared CPU lock.
#   benchmarks/distill_train.sh beauty runs/proto/guim-beauty runs/distill/beauty [CAP]
# Models already present in OUT are skipped, so the script resumes after an interruption.
set -euo pipefail
DATASET=$1 TEACHER=$2 OUT=$3 CAP=${4:-6}
GUIM=".venv/bin/guim"
SETS=(--set train.threads=1 --set "train.max_minutes=$CAP")
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
run() {  # NAME COMMAND...
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.json" ]; then echo "skip $name"; return; fi
  rm -rf "$OUT/$name"
  echo "== $name: $*"
  flock -s /tmp/guim-cpu.lock "$@" > "$OUT/$name.log" 2>&1
}
run bert2dnn $GUIM distill -t "$TEACHER" --student bert2dnn -o "$OUT/bert2dnn" "${SETS[@]}"
run minilm-half-depth $GUIM distill -t "$TEACHER" --student minilm -o "$OUT/minilm-half-depth" \
  --set model.n_layers=$(( $(jq .model.n_layers "$TEACHER/config.json") / 2 )) "${SETS[@]}"
run minilm-half-width $GUIM distill -t "$TEACHER" --student minilm -o "$OUT/minilm-half-width" \
  --set model.dim=$(( $(jq .model.dim "$TEACHER/config.json") / 2 )) \
  --set model.ffn_dim=$(( $(jq .model.ffn_dim "$TEACHER/config.json") / 2 )) "${SETS[@]}"
run teacher-seed1 $GUIM train -d "$(jq -r .path "$TEACHER/dataset.json")" -o "$OUT/teacher-seed1" \
  --preset "$DATASET" --set train.seed=1 "${SETS[@]}"
run bert2dnn-stacked $GUIM distill -t "$TEACHER" -t "$OUT/teacher-seed1" --student bert2dnn \
  -o "$OUT/bert2dnn-stacked" "${SETS[@]}"
run bert2dnn-no-temperature $GUIM distill -t "$TEACHER" --student bert2dnn \
  -o "$OUT/bert2dnn-no-temperature" --set distill.temperature=1.0 "${SETS[@]}"
echo done
