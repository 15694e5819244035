#!/usr/bin/env bash
# The shapes protocol of docs/RESULTS.md: train the embedded default (configs/shapes_cvae.yaml),
# the paper's hybrid, the CNN and the peer families (configs/shapes_<name>.yaml), evaluate GED /
# Hungarian-matched IoU / mode purity and coverage of 16 hypotheses on the 200 test images, draw
# the hypotheses figure.
#   tools/results/shapes.sh [SEED] [NAME ...]   (default names: cnn hybrid cvae prob_unet ssn)
set -euo pipefail
cd "$(dirname "$0")/../.."
seed=${1:-0}
shift || true
names=${*:-cnn hybrid cvae prob_unet ssn}
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for obj in $names; do
  run=runs/shapes_$obj/seed$seed
  mkdir -p "$run"
  "$PY" tools/train.py --config configs/shapes_$obj.yaml --out "$run" --no-progress \
    train.seed=$seed 2>&1 | tee "$run/train.log"
  "$PY" tools/evaluate.py --ckpt "$run/best.pt" --split test --samples 50 --hypotheses 16 \
    --json "$run/test_clean.json" --quiet
done
"$PY" tools/results/figures.py shapes --cnn runs/shapes_cnn/seed$seed/best.pt \
  --cvae runs/shapes_cvae/seed$seed/best.pt --samples 8 --indices 0 1 2 3 \
  --out docs/figures/results/shapes_hypotheses.png
