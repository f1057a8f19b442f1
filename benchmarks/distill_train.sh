#!/usr/bin/env bash
# Trains the issue-13 teachers and students of one dataset: two teachers of the dataset's preset
# (seeds 0 and 1; the second for stacking), each capped at $TEACHER_CAP minutes of training
# (train.max_minutes), then the students of the first, each capped at $CAP minutes; one thread
# each, $JOBS runs side by side (default 1), under the shared CPU lock.
#   benchmarks/distill_train.sh beauty runs/proto/data/beauty runs/distill/beauty 5 6
#   JOBS=2 benchmarks/distill_train.sh ...      # two runs at a time, one core each
# With TEACHER=RUN an existing run is the teacher (e.g. a deeper one); no second teacher is
# trained then, so the stacked student is skipped.
# With LONG=M two more BERT2DNN students train for M minutes each: the preset's (position-weighted
# pooling) and one concatenating the last 20 item tokens (model.mlp.pooling=concat), to see how
# far the feed-forward student gets when it is not cut off after a few epochs. With LONGER=M one
# more: concatenated tokens and no temperature (T = 1), M minutes.
# Runs already present in OUT are skipped, so the script resumes after an interruption.
set -euo pipefail
PRESET=$1 DATA=$2 OUT=$3 CAP=${4:-5} TEACHER_CAP=${5:-6}
JOBS=${JOBS:-1}
LOCK=${LOCK:-/tmp/guim-cpu.lock}
GUIM=${GUIM:-.venv/bin/guim}
SETS=(--set train.threads=1 --set "train.max_minutes=$CAP")
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
run() {  # NAME COMMAND...
  local name=$1; shift
  if [ -f "$OUT/$name/metrics.json" ]; then echo "skip $name"; return; fi
  rm -rf "$OUT/$name"
  echo "== $name: $*"
  flock -s "$LOCK" "$@" > "$OUT/$name.log" 2>&1
}
in_lanes() {  # run the functions named in $@ in $JOBS lanes; fail if any failed
  local lanes=() pids=() i
  for i in $(seq 0 $((JOBS - 1))); do lanes[i]=""; done
  i=0
  for f in "$@"; do lanes[i % JOBS]+="$f "; i=$((i + 1)); done
  for i in "${!lanes[@]}"; do
    [ -n "${lanes[i]}" ] || continue
    (for f in ${lanes[i]}; do "$f"; done) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
teacher() {
  run teacher $GUIM train -d "$DATA" -o "$OUT/teacher" --preset "$PRESET" --set train.seed=0 \
    --set train.threads=1 --set "train.max_minutes=$TEACHER_CAP"
}
teacher_seed1() {
  run teacher-seed1 $GUIM train -d "$DATA" -o "$OUT/teacher-seed1" --preset "$PRESET" \
    --set train.seed=1 --set train.threads=1 --set "train.max_minutes=$TEACHER_CAP"
}
if [ -n "${TEACHER:-}" ]; then
  T=$TEACHER
else
  in_lanes teacher teacher_seed1
  T="$OUT/teacher"
fi
LAYERS=$(jq .model.n_layers "$T/config.json")
minilm_half_depth() {
  run minilm-half-depth $GUIM distill -t "$T" --student minilm -o "$OUT/minilm-half-depth" \
    --set model.n_layers=$((LAYERS / 2)) "${SETS[@]}"
}
bert2dnn() {
  run bert2dnn $GUIM distill -t "$T" --student bert2dnn -o "$OUT/bert2dnn" "${SETS[@]}"
}
bert2dnn_stacked() {
  run bert2dnn-stacked $GUIM distill -t "$T" -t "$OUT/teacher-seed1" --student bert2dnn \
    -o "$OUT/bert2dnn-stacked" "${SETS[@]}"
}
minilm_half_width() {
  run minilm-half-width $GUIM distill -t "$T" --student minilm -o "$OUT/minilm-half-width" \
    --set model.dim=$(($(jq .model.dim "$T/config.json") / 2)) \
    --set model.ffn_dim=$(($(jq .model.ffn_dim "$T/config.json") / 2)) "${SETS[@]}"
}
# control: the half-depth student initialised from the teacher, its own next-item loss only
minilm_half_depth_no_distill() {
  run minilm-half-depth-no-distill $GUIM distill -t "$T" --student minilm \
    -o "$OUT/minilm-half-depth-no-distill" --set distill.attention_weight=0 \
    --set distill.score_weight=0 --set model.n_layers=$((LAYERS / 2)) "${SETS[@]}"
}
bert2dnn_no_temperature() {
  run bert2dnn-no-temperature $GUIM distill -t "$T" --student bert2dnn \
    -o "$OUT/bert2dnn-no-temperature" --set distill.temperature=1.0 "${SETS[@]}"
}
bert2dnn_long() {
  run bert2dnn-long $GUIM distill -t "$T" --student bert2dnn -o "$OUT/bert2dnn-long" \
    --set train.threads=1 --set "train.max_minutes=$LONG"
}
bert2dnn_concat_long() {
  run bert2dnn-concat-long $GUIM distill -t "$T" --student bert2dnn \
    -o "$OUT/bert2dnn-concat-long" --set model.mlp.pooling=concat --set train.threads=1 \
    --set "train.max_minutes=$LONG"
}
bert2dnn_concat_t1_long() {
  run bert2dnn-concat-t1-long $GUIM distill -t "$T" --student bert2dnn \
    -o "$OUT/bert2dnn-concat-t1-long" --set model.mlp.pooling=concat \
    --set distill.temperature=1.0 --set train.threads=1 --set "train.max_minutes=$LONGER"
}
STUDENTS=(minilm_half_depth bert2dnn minilm_half_width minilm_half_depth_no_distill
  bert2dnn_no_temperature)
[ -z "${LONG:-}" ] || STUDENTS+=(bert2dnn_long bert2dnn_concat_long)
[ -z "${LONGER:-}" ] || STUDENTS+=(bert2dnn_concat_t1_long)
[ -n "${TEACHER:-}" ] || STUDENTS+=(bert2dnn_stacked)
in_lanes "${STUDENTS[@]}"
echo done
