#!/usr/bin/env bash
# The whole ablation on a lent GPU machine: one prepared command, run in the repository root there.
#
# Only the working tree and 64 MiB per call travel, so the data goes as pack parts
# (`make gpu-pack` here writes .pack/<name>.partK-of-N.npz, git-ignored), one part carried per
# call. Every call stores what it carried outside the tree (STORE, kept while the machine stays
# warm) and says which parts are still missing; the call that completes the pack unpacks it,
# checks it byte for byte and runs scripts/ablation.sh with that machine's own Python.
#
# The run stops at TIME_LIMIT seconds (a call may last 10 minutes); every stage resumes, so the
# same command on the still-warm machine continues it. What is kept comes back under OUT: the
# small artefacts (tables, logs, curves, cards, metrics, the teacher's soft labels) as
# ablation_small.tar.gz, refreshed every minute, and the DKD student's int8 model and card.
set -euo pipefail

PY=${PY:-python3}
PACK=${PACK:-.pack}
STORE=${STORE:-/tmp/rs_ghost_pack}
DATA_ROOT=${DATA_ROOT:-/tmp/rs_ghost_data}
RUNS=${RUNS:-/tmp/rs_ghost_runs/ablation}
RESULTS=${OUT:-gpu_results}
TIME_LIMIT=${TIME_LIMIT:-540}
# The GPU schedule is recipe files: recipes/gpu/teacher.toml, the rows {none,kd,dkd}_seed0.toml and
# the beta sweep sweep_beta*.toml (G-Ghost 040, batch 256, 8 loader workers). EPOCHS, STUDENT, ARGS
# and the like still override them for short runs (scripts/ablation.sh).
export RECIPES=${RECIPES:-recipes/gpu} TEACHER_RECIPE=${TEACHER_RECIPE:-recipes/gpu/teacher.toml}
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1

started=$SECONDS
command -v make >/dev/null || { echo "error: this machine has no make; scripts/ablation.sh trains with make train" >&2; exit 1; }
mkdir -p "$STORE" "$RESULTS"
shopt -s nullglob
for part in "$PACK"/*.part*-of-*.npz; do cp "$part" "$STORE/"; done
data=$($PY -m training unpack --pack "$STORE" --out "$DATA_ROOT") || exit  # names any missing part
DATA=${data#data: }
echo "== data $DATA ready in $((SECONDS - started)) s; $($PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")')"

keep() {  # the small artefacts, in files that come back
  (cd "$RUNS" && find . \( -name '*.md' -o -name '*.csv' -o -name '*.json' -o -name '*.log' -o -name '*.png' \
    -o -name '*.soft_labels.npz' \) -print0 | tar --null -czf "$RESULTS/ablation_small.tar.gz.tmp" -T -) &&
    mv "$RESULTS/ablation_small.tar.gz.tmp" "$RESULTS/ablation_small.tar.gz"
  local dkd
  for dkd in "$RUNS"/dkd_seed*/*_dkd_int8.onnx; do  # the first DKD row's int8 model, once quantised
    cp "$dkd" "${dkd%.onnx}.md" "$RESULTS/"
    break
  done
  return 0
}

mkdir -p "$RUNS"
DATA="$DATA" OUT="$RUNS" PY="$PY" setsid bash scripts/ablation.sh >>"$RUNS/ablation.log" 2>&1 &
ablation=$!
while kill -0 "$ablation" 2>/dev/null; do
  if ((SECONDS - started > TIME_LIMIT)); then
    kill -- -"$ablation" || true
    wait "$ablation" || true
    keep
    grep '^== ' "$RUNS/ablation.log" || true
    echo "stopped at TIME_LIMIT=$TIME_LIMIT s; run the same command again on this warm machine to resume"
    exit 3
  fi
  sleep 5
  ((SECONDS % 60 < 5)) && keep
done
status=0
wait "$ablation" || status=$?
keep
grep '^== ' "$RUNS/ablation.log" || true
if ((status != 0)); then
  tail -n 30 "$RUNS/ablation.log"
  exit "$status"
fi
cat "$RUNS/results.md" "$RUNS/beta_sweep.md"
echo "== whole call: $((SECONDS - started)) s"
