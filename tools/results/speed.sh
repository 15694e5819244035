#!/usr/bin/env bash
# The speed measurement of docs/RESULTS.md ("Speed"): two headline runs back to back (sampling and
# likelihood ratios of every family at batch 8, 128x128; they must agree), then the whole grid
# (batch 1 and 256x256 too, training steps, memory, loader). Run it on an idle machine: the load
# average is printed before each run and stored in each JSON.
#   tools/results/speed.sh [OUT_DIR]   (default runs/bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/bench}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
for run in 1 2; do
  echo "headline run $run: $(uptime)"
  "$PY" tools/benchmark.py --no-training --loader none --json "$out/headline_$run.json"
done
echo "full grid: $(uptime)"
"$PY" tools/benchmark.py --settings all --json "$out/full.json"
echo "done: $(uptime)"
