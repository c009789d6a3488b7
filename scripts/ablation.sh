#!/usr/bin/env bash
# The paper's ablation, run the way a user trains: `make train` for every variant.
# One VGG-16-BN teacher, then the G-Ghost student with DKD, with classic KD and without KD (same
# schedule and seed), then DKD's beta sweep. Every student is scored on the full validation split.
# A variant whose model file exists is skipped, so a stopped ablation continues where it ended;
# an interrupted variant continues from its last epoch with RESUME=1.
set -euo pipefail

OUT=${OUT:-runs/ablation}
SCHEDULE=(EPOCHS="${EPOCHS:-30}" TEACHER_EPOCHS="${TEACHER_EPOCHS:-${EPOCHS:-30}}" SEED="${SEED:-0}"
  LIMIT_PER_CLASS="${LIMIT_PER_CLASS:-}")
STUDENT=${STUDENT:-g_ghost_regnetx_040}
EXTRA=${ARGS:-}
RESUME=${RESUME:+--resume}
DATA=${DATA:-../shared/data/eurosat_rgb}
TEACHER_CHECKPOINT="$OUT/dkd_beta8/teacher/best.pt"

variant() {  # variant NAME DISTILL EXTRA_ARGS...
  local name=$1 distill=$2
  shift 2
  if [[ -f "$OUT/$name/${STUDENT}_${distill}.onnx" ]]; then
    echo "== $name: done before, skipped"
    return
  fi
  echo "== $name: $(date -u +%H:%M:%S)"
  make --no-print-directory train DATA="$DATA" STUDENT="$STUDENT" DISTILL="$distill" OUT="$OUT/$name" \
    "${SCHEDULE[@]}" ARGS="$EXTRA $RESUME $*"
}

variant dkd_beta8 dkd --beta 8  # trains the teacher as stage 1
variant kd kd --teacher-checkpoint "$TEACHER_CHECKPOINT"
variant none none
for beta in 4 2 1; do
  variant "dkd_beta$beta" dkd --teacher-checkpoint "$TEACHER_CHECKPOINT" --beta "$beta"
done

echo "== scoring on the full validation split: $(date -u +%H:%M:%S)"
SCORES="$OUT/validation"
score() {  # score NAME MODEL: evaluate MODEL on every validation image into $SCORES/NAME
  [[ -f "$SCORES/$1/metrics.json" ]] || .venv/bin/python -m training evaluate --model "$2" --data "$DATA" \
    --split-csv "$DATA/validation.csv" --out "$SCORES/$1"
}
score teacher "$TEACHER_CHECKPOINT"
for name in none kd dkd_beta8 dkd_beta4 dkd_beta2 dkd_beta1; do
  model=$(echo "$OUT/$name/${STUDENT}"_*.onnx)
  if [[ -f "$model" ]]; then score "student_$name" "$model"; fi
done
int8="$OUT/dkd_beta8/${STUDENT}_dkd_int8.onnx"
[[ -f "$int8" ]] || .venv/bin/python -m training quantize --model "$OUT/dkd_beta8/${STUDENT}_dkd.onnx" \
  --data "$DATA" --out "$int8"
rm -rf "$SCORES/student_dkd_beta8_int8"
cp -r "$(dirname "$int8")/${STUDENT}_dkd_int8_evaluation/int8" "$SCORES/student_dkd_beta8_int8"

.venv/bin/python -m training report "$SCORES"/{teacher,student_none,student_kd,student_dkd_beta8,student_dkd_beta8_int8} \
  --out "$OUT/results.md"
.venv/bin/python -m training report "$SCORES"/student_dkd_beta{1,2,4,8} --out "$OUT/beta_sweep.md"
echo "== done: $(date -u +%H:%M:%S)"
