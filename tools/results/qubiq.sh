#!/usr/bin/env bash
# The QUBIQ brain-growth protocol of docs/RESULTS.md: train each configs/qubiq_<name>.yaml
# (27 train / 4 val / 8 test slices, 128x128, 250 steps, best.pt selected on val) and evaluate it on
# the 8 test cases against all seven raters: S = 50 for the likelihood, 16 hypotheses (GED also
# with 100). Each run writes runs/qubiq_<name>/seed<k>/{best.pt,test.json,wall_s.txt} and its
# log to runs/qubiq_<name>/seed<k>.train.log.
#   tools/results/qubiq.sh DATA_ROOT [SEED] [NAME ...]
#       (default seed 0, names: cnn hybrid cvae gsnn prob_unet ssn)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${1:?usage: tools/results/qubiq.sh DATA_ROOT [SEED] [NAME ...]}
seed=${2:-0}
shift 2 || shift $#
names=${*:-cnn hybrid cvae gsnn prob_unet ssn}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for name in $names; do
  run=runs/qubiq_$name/seed$seed
  mkdir -p "$(dirname "$run")"
  t0=$(date +%s)
  "$PY" tools/train.py --config "configs/qubiq_$name.yaml" --out "$run" --no-progress \
    train.seed="$seed" data.root="$root" >"$run.train.log" 2>&1
  t1=$(date +%s)
  "$PY" tools/evaluate.py --ckpt "$run/best.pt" --split test --samples 50 --hypotheses 16 \
    --json "$run/test.json" --quiet eval.extra_ged_hypotheses=100 data.root="$root"
  t2=$(date +%s)
  printf 'train %d\nevaluate %d\n' $((t1 - t0)) $((t2 - t1)) >"$run/wall_s.txt"
  echo "$(date -u +%FT%TZ) qubiq_$name seed $seed: train $((t1 - t0)) s, evaluate $((t2 - t1)) s"
done
