#!/usr/bin/env bash
# The paper's ablation, run the way a user trains: `make train` for every student.
# 1. The VGG-16-BN teacher (`python -m training train`), unless SOFT_LABELS names its committed
#    logits: then no teacher is trained and every student reads them.
# 2. The G-Ghost student without KD, with classic KD and with DKD (beta DKD_BETA, default 2): the
#    bundled student's recipe (recipes/, through `make train`), for every seed in SEEDS (0 1).
# 3. DKD's beta sweep over BETAS (default 1 2 4 8) on the same schedule (SWEEP_EPOCHS to shorten).
# 4. Every model scored on the full validation split (clean and under radiometric shifts), the
#    DKD student quantised, the tables written to $OUT/results.md and $OUT/beta_sweep.md.
# Every stage resumes from its last epoch; a finished one is skipped. So a stopped ablation
# continues where it ended when started again with the same settings.
set -euo pipefail

OUT=${OUT:-runs/ablation}
DATA=${DATA:-../shared/data/eurosat_rgb}
STUDENT=${STUDENT:-g_ghost_regnetx_002}
EPOCHS=${EPOCHS:-}  # empty: the recipe's
TEACHER_EPOCHS=${TEACHER_EPOCHS:-}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-$EPOCHS}
SEEDS=${SEEDS:-0 1}
BETAS=${BETAS:-1 2 4 8}
DKD_BETA=${DKD_BETA:-2}
LIMIT_PER_CLASS=${LIMIT_PER_CLASS:-}
SOFT_LABELS=${SOFT_LABELS:-}
EXTRA=${ARGS:-}
# PY: another Python (a GPU machine's own, with torch) is used as it is: no venv is made.
PY=${PY:-.venv/bin/python}
MAKE_TRAIN=(make --no-print-directory train PY="$PY")
[[ "$PY" == .venv/bin/python ]] || MAKE_TRAIN=(make --no-print-directory -o setup train PY="$PY")
TEACHER_CHECKPOINT="$OUT/teacher/best.pt"
LIMIT=${LIMIT_PER_CLASS:+--limit-per-class $LIMIT_PER_CLASS}

stamp() { echo "== $1: $(date -u +%H:%M:%S)"; }

if [[ -n "$SOFT_LABELS" ]]; then
  TEACHER=(--soft-labels "$SOFT_LABELS")
else
  stamp "teacher vgg16_bn (recipes/eurosat_vgg16_bn_teacher.toml)"
  # shellcheck disable=SC2086  # EXTRA and LIMIT are lists of flags
  $PY -m training train --recipe recipes/eurosat_vgg16_bn_teacher.toml --data "$DATA" \
    ${TEACHER_EPOCHS:+--epochs "$TEACHER_EPOCHS"} --out "$OUT/teacher" --resume $LIMIT $EXTRA
  TEACHER=(--teacher-checkpoint "$TEACHER_CHECKPOINT")
fi

student() {  # student NAME DISTILL EPOCHS SEED EXTRA_ARGS...
  local name=$1 distill=$2 epochs=$3 seed=$4
  shift 4
  if [[ -f "$OUT/$name/${STUDENT}_${distill}.onnx" ]]; then
    echo "== $name: done before, skipped"
    return
  fi
  stamp "$name"
  # SOFT_LABELS= : the teacher comes in $* (its checkpoint or the committed logits), never twice.
  "${MAKE_TRAIN[@]}" DATA="$DATA" STUDENT="$STUDENT" DISTILL="$distill" OUT="$OUT/$name" SOFT_LABELS= \
    EPOCHS="$epochs" SEED="$seed" LIMIT_PER_CLASS="$LIMIT_PER_CLASS" ARGS="$EXTRA --resume $*"
}

for seed in $SEEDS; do
  student "none_seed$seed" none "$EPOCHS" "$seed"
  student "kd_seed$seed" kd "$EPOCHS" "$seed" "${TEACHER[@]}"
  student "dkd_seed$seed" dkd "$EPOCHS" "$seed" "${TEACHER[@]}" --beta "$DKD_BETA"
done
for beta in $BETAS; do
  student "sweep_beta$beta" dkd "$SWEEP_EPOCHS" 0 "${TEACHER[@]}" --beta "$beta"
done

stamp "scoring on the full validation split"
SCORES="$OUT/validation"
score() {  # score NAME MODEL: evaluate MODEL on every validation image into $SCORES/NAME
  [[ -f "$SCORES/$1/metrics.json" ]] || $PY -m training evaluate --model "$2" --data "$DATA" \
    --split-csv "$DATA/validation.csv" --out "$SCORES/$1"
}
rows=()
if [[ -f "$TEACHER_CHECKPOINT" ]]; then
  score teacher "$TEACHER_CHECKPOINT"
  rows+=("$SCORES/teacher")
fi
for seed in $SEEDS; do
  for name in none kd dkd; do
    model=$(echo "$OUT/${name}_seed$seed/${STUDENT}"_*.onnx)
    score "student_${name}_seed$seed" "$model"
    rows+=("$SCORES/student_${name}_seed$seed")
  done
done
sweep=()
for beta in $BETAS; do
  score "sweep_beta$beta" "$OUT/sweep_beta$beta/${STUDENT}_dkd.onnx"
  sweep+=("$SCORES/sweep_beta$beta")
done

first_seed=${SEEDS%% *}
dkd="$OUT/dkd_seed$first_seed/${STUDENT}_dkd"
[[ -f "${dkd}_int8.onnx" ]] || $PY -m training quantize --model "$dkd.onnx" --data "$DATA" --out "${dkd}_int8.onnx"
rm -rf "$SCORES/student_dkd_int8"
cp -r "${dkd}_int8_evaluation/int8" "$SCORES/student_dkd_int8"
rows+=("$SCORES/student_dkd_int8")

$PY -m training report "${rows[@]}" --out "$OUT/results.md"
$PY -m training report "${sweep[@]}" --out "$OUT/beta_sweep.md"
stamp "done"
