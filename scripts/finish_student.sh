#!/usr/bin/env bash
# After a student run (`python -m training run --recipe ...`): fit its Sentinel-2 L2A curves, quantize
# it to int8, score both on the L2A spectral check, and copy the small artefacts (log, curves, cards,
# evaluations, tables; never a checkpoint) into results/. Each step is the command the README shows.
#
# Usage: bash scripts/finish_student.sh RUN_DIR RESULTS_DIR SHIPPED_NAME
#   e.g. bash scripts/finish_student.sh ../rs_ghost_runs/g002_adamw_s0 \
#          results/eurosat_seed0/student_g002_adamw_50ep eurosat_g_ghost_regnetx_002_int8
# The int8 model lands in RUN_DIR/int8/SHIPPED_NAME.onnx; copying it into resources/models is a
# separate, deliberate step.
set -euo pipefail

RUN=${1:?run folder}
RESULTS=${2:?results folder}
NAME=${3:?name of the int8 model}
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared/data}
CACHE=${CACHE:-../rs_ghost_runs/cache}
PATCHES=$SHARED/l2a_unlabelled/patches_b02_b03_b04_b08.npz
SCENE=$SHARED/geotiff/sentinel2_demmin_germany_20230603.tif
EUROSAT=$SHARED/eurosat_rgb

FP32=$(find "$RUN" -maxdepth 1 -name '*.onnx' | head -n 1)
[ -n "$FP32" ] || { echo "error: no .onnx in $RUN: let the run finish first" >&2; exit 2; }

mkdir -p "$RUN/l2a" "$RUN/int8"
$PY -m training l2a-fit --model "$FP32" --data "$EUROSAT" --cache-dir "$CACHE" --patches "$PATCHES" \
  --method linear --out "$RUN/l2a/fp32_linear.onnx" --overwrite
$PY -m training l2a-fit --model "$FP32" --data "$EUROSAT" --cache-dir "$CACHE" --patches "$PATCHES" \
  --method quantile --out "$RUN/l2a/fp32_quantile.onnx" --overwrite
$PY -m training spectral-check --model "$RUN/l2a/fp32_linear.onnx" "$RUN/l2a/fp32_quantile.onnx" \
  --patches "$PATCHES" --scene "$SCENE" --out "$RUN/l2a/check_fp32"
$PY -m training quantize --model "$RUN/l2a/fp32_linear.onnx" --data "$EUROSAT" --cache-dir "$CACHE" \
  --out "$RUN/int8/$NAME.onnx" --overwrite
$PY -m training spectral-check --model "$RUN/int8/$NAME.onnx" --patches "$PATCHES" --scene "$SCENE" \
  --out "$RUN/l2a/check_int8"

mkdir -p "$RESULTS/int8" "$RESULTS/l2a"
# The run's own log without the progress bars.
grep -v '%|' "$RUN/run.log" > "$RESULTS/train.log" || true
cp "$RUN"/student/{log.csv,log.json,curves.png} "$RESULTS/"
cp "${FP32%.onnx}.md" "$RESULTS/model_card.md"
cp -r "$RUN/evaluation" "$RESULTS/"
cp "$RUN/int8/$NAME.md" "$RESULTS/int8/model_card_int8.md"
cp -r "$RUN/int8/${NAME}_evaluation/." "$RESULTS/int8/"
for check in check_fp32 check_int8; do  # the tables; the Demmin class maps (.gpkg) stay in the run
  mkdir -p "$RESULTS/l2a/$check"
  cp "$RUN/l2a/$check"/*.{json,md} "$RESULTS/l2a/$check/"
done
echo "results: $RESULTS; int8 model: $RUN/int8/$NAME.onnx"
