#!/usr/bin/env bash
# Trains the issue-13 teachers and students of one dataset: two teachers of the dataset's preset
# (seeds 0 and 1; the second for stacking), each capped at $TEACHER_CAP minutes of training
# (train.max_minutes), then the students of the first, each capped at $CAP minutes; one thread
# each, under the shared CPU lock.
#   benchmarks/distill_train.sh beauty runs/proto/data/beauty runs/distill/beauty 5 6
# Runs already present in OUT are skipped, so the script resumes after an interruption.
set -euo pipefail
PRESET=$1 DATA=$2 OUT=$3 CAP=${4:-5} TEACHER_CAP=${5:-6}
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
for seed in 0 1; do
  name=teacher; [ $seed = 1 ] && name=teacher-seed1
  run $name $GUIM train -d "$DATA" -o "$OUT/$name" --preset "$PRESET" --set train.seed=$seed \
    --set train.threads=1 --set "train.max_minutes=$TEACHER_CAP"
done
T="$OUT/teacher"
run minilm-half-depth $GUIM distill -t "$T" --student minilm -o "$OUT/minilm-half-depth" \
  --set model.n_layers=$(( $(jq .model.n_layers "$T/config.json") / 2 )) "${SETS[@]}"
run bert2dnn $GUIM distill -t "$T" --student bert2dnn -o "$OUT/bert2dnn" "${SETS[@]}"
run bert2dnn-stacked $GUIM distill -t "$T" -t "$OUT/teacher-seed1" --student bert2dnn \
  -o "$OUT/bert2dnn-stacked" "${SETS[@]}"
run minilm-half-width $GUIM distill -t "$T" --student minilm -o "$OUT/minilm-half-width" \
  --set model.dim=$(( $(jq .model.dim "$T/config.json") / 2 )) \
  --set model.ffn_dim=$(( $(jq .model.ffn_dim "$T/config.json") / 2 )) "${SETS[@]}"
# control: the half-depth student initialised from the teacher, its own next-item loss only
run minilm-half-depth-no-distill $GUIM distill -t "$T" --student minilm \
  -o "$OUT/minilm-half-depth-no-distill" --set distill.attention_weight=0 \
  --set distill.score_weight=0 \
  --set model.n_layers=$(( $(jq .model.n_layers "$T/config.json") / 2 )) "${SETS[@]}"
run bert2dnn-no-temperature $GUIM distill -t "$T" --student bert2dnn \
  -o "$OUT/bert2dnn-no-temperature" --set distill.temperature=1.0 "${SETS[@]}"
echo done
