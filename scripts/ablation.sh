#!/usr/bin/env bash
# The paper's ablation, run the way a user trains: `make train RECIPE=...` for every student.
# Every row is a recipe file in RECIPES (default recipes/ablation; recipes/gpu on a GPU machine):
# 1. The VGG-16-BN teacher (`python -m training train --recipe TEACHER_RECIPE`), unless SOFT_LABELS
#    names its committed logits: then no teacher is trained and every distilled student reads them.
# 2. The rows RECIPES/{none,kd,dkd}_seedN.toml, seed by seed: the student without KD, with
#    classic KD and with DKD, on one schedule.
# 3. DKD's beta sweep: RECIPES/sweep_beta*.toml.
# 4. Every model scored on the full validation split (clean and under radiometric shifts), the
#    first DKD row quantised, the tables written to $OUT/results.md and $OUT/beta_sweep.md.
# EPOCHS, TEACHER_EPOCHS, SWEEP_EPOCHS, STUDENT, LIMIT_PER_CLASS and ARGS override the recipes
# (empty: the recipes' own), for short or test runs. Every stage resumes from its last epoch; a
# finished one is skipped. So a stopped ablation continues where it ended when started again.
# JOBS=N trains N rows at once, each on nproc / N threads (OMP_NUM_THREADS, unless set), each
# row's output in $OUT/logs/ROW.log, shown when it ends: a small student does not use many cores
# well, so on 2 cores two 1-thread rows finish sooner than one 2-thread row after another.
set -euo pipefail

OUT=${OUT:-runs/ablation}
DATA=${DATA:-../shared/data/eurosat_rgb}
RECIPES=${RECIPES:-recipes/ablation}
TEACHER_RECIPE=${TEACHER_RECIPE:-recipes/eurosat_vgg16_bn_teacher.toml}
STUDENT=${STUDENT:-}  # empty: the recipes'
EPOCHS=${EPOCHS:-}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-$EPOCHS}
LIMIT_PER_CLASS=${LIMIT_PER_CLASS:-}
SOFT_LABELS=${SOFT_LABELS:-}
EXTRA=${ARGS:-}
JOBS=${JOBS:-1}
# PY: another Python (a GPU machine's own, with torch) is used as it is: no venv is made.
PY=${PY:-.venv/bin/python}
MAKE_TRAIN=(make --no-print-directory train PY="$PY")
[[ "$PY" == .venv/bin/python ]] || MAKE_TRAIN=(make --no-print-directory -o setup train PY="$PY")
TEACHER_CHECKPOINT="$OUT/teacher/best.pt"
LIMIT=${LIMIT_PER_CLASS:+--limit-per-class $LIMIT_PER_CLASS}

stamp() { echo "== $1: $(date -u +%H:%M:%S)"; }

rows() {  # RECIPES/{none,kd,dkd}_seedN.toml, seed by seed, in that order
  local seed method
  for seed in $(find "$RECIPES" -maxdepth 1 -name '*_seed*.toml' | sed 's/.*_seed\([0-9]*\)\.toml$/\1/' | sort -nu); do
    for method in none kd dkd; do
      [[ -f "$RECIPES/${method}_seed$seed.toml" ]] && echo "$RECIPES/${method}_seed$seed.toml"
    done
  done
  return 0
}
sweep() { find "$RECIPES" -maxdepth 1 -name 'sweep_beta*.toml' | sort -V; }
name_of() { basename "$1" .toml; }
model_of() { find "$1" -maxdepth 1 -name '*.onnx' ! -name '*_int8.onnx' | head -n 1; }  # the fp32 export

if [[ -n "$SOFT_LABELS" ]]; then
  TEACHER=(--soft-labels "$SOFT_LABELS")
else
  stamp "teacher ($TEACHER_RECIPE)"
  # shellcheck disable=SC2086  # EXTRA and LIMIT are lists of flags
  $PY -m training train --recipe "$TEACHER_RECIPE" --data "$DATA" \
    ${TEACHER_EPOCHS:+--epochs "$TEACHER_EPOCHS"} --out "$OUT/teacher" --resume $LIMIT $EXTRA
  # --soft-labels "": the recipes' logits file gives way to this teacher's, computed once.
  TEACHER=(--teacher-checkpoint "$TEACHER_CHECKPOINT" --soft-labels '""')
fi

student() {  # student RECIPE EPOCHS: one row, trained and exported by `make train`
  local recipe=$1 epochs=$2 name teacher=()
  name=$(name_of "$recipe")
  if [[ -n "$(model_of "$OUT/$name" 2>/dev/null)" ]]; then
    echo "== $name: done before, skipped"
    return
  fi
  stamp "$name ($recipe)"
  grep -q '^distill = "none"' "$recipe" || teacher=("${TEACHER[@]}")
  # SOFT_LABELS= : the teacher comes in ARGS (its checkpoint or the committed logits), never twice.
  "${MAKE_TRAIN[@]}" RECIPE="$recipe" DATA="$DATA" STUDENT="$STUDENT" DISTILL= OUT="$OUT/$name" SOFT_LABELS= \
    EPOCHS="$epochs" SEED= LIMIT_PER_CLASS="$LIMIT_PER_CLASS" ARGS="$EXTRA --resume ${teacher[*]}"
}

declare -A RUNNING=()  # pid -> name of each row training in the background (JOBS > 1)

reap() {  # wait for one background row and show its log; fails when the row failed
  local pid name status=0
  wait -n -p pid "${!RUNNING[@]}" || status=$?
  name=${RUNNING[$pid]}
  unset "RUNNING[$pid]"
  cat "$OUT/logs/$name.log"
  if ((status != 0)); then
    echo "== $name failed (exit $status); its log: $OUT/logs/$name.log" >&2
    return 1
  fi
}

students() {  # students EPOCHS RECIPE...: the rows, JOBS at a time
  local epochs=$1 recipe failed=0 threads
  shift
  if ((JOBS <= 1)); then
    for recipe in "$@"; do student "$recipe" "$epochs"; done
    return 0
  fi
  mkdir -p "$OUT/logs"
  threads=$(($(nproc) / JOBS))
  ((threads > 0)) || threads=1
  for recipe in "$@"; do
    ((${#RUNNING[@]} < JOBS)) || reap || failed=1
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads} student "$recipe" "$epochs" >"$OUT/logs/$(name_of "$recipe").log" 2>&1 &
    RUNNING[$!]=$(name_of "$recipe")
  done
  while ((${#RUNNING[@]})); do reap || failed=1; done
  return "$failed"
}

# shellcheck disable=SC2046  # one recipe path per word
students "$EPOCHS" $(rows)
# shellcheck disable=SC2046
students "$SWEEP_EPOCHS" $(sweep)

stamp "scoring on the full validation split"
SCORES="$OUT/validation"
score() {  # score NAME MODEL: evaluate MODEL on every validation image into $SCORES/NAME
  [[ -f "$SCORES/$1/metrics.json" ]] || $PY -m training evaluate --model "$2" --data "$DATA" \
    --split-csv "$DATA/validation.csv" --out "$SCORES/$1"
}
results=()
if [[ -f "$TEACHER_CHECKPOINT" ]]; then
  score teacher "$TEACHER_CHECKPOINT"
  results+=("$SCORES/teacher")
fi
for recipe in $(rows); do
  name=$(name_of "$recipe")
  score "student_$name" "$(model_of "$OUT/$name")"
  results+=("$SCORES/student_$name")
done
betas=()
for recipe in $(sweep); do
  name=$(name_of "$recipe")
  score "$name" "$(model_of "$OUT/$name")"
  betas+=("$SCORES/$name")
done

first_dkd=$(rows | grep '/dkd_seed' | head -n 1)
dkd=$(model_of "$OUT/$(name_of "$first_dkd")")
dkd=${dkd%.onnx}
[[ -f "${dkd}_int8.onnx" ]] || $PY -m training quantize --model "$dkd.onnx" --data "$DATA" --out "${dkd}_int8.onnx"
rm -rf "$SCORES/student_dkd_int8"
cp -r "${dkd}_int8_evaluation/int8" "$SCORES/student_dkd_int8"
results+=("$SCORES/student_dkd_int8")

$PY -m training report "${results[@]}" --out "$OUT/results.md"
$PY -m training report "${betas[@]}" --out "$OUT/beta_sweep.md"
stamp "done"
