#!/usr/bin/env bash
# The QUBIQ brain-growth protocol of docs/RESULTS.md: 5-fold cross-validation over all 39 cases of
# each configs/qubiq_<name>.yaml (segcvae crossval: per fold, training on its items with
# validation carved from them, best.pt by validation GED, then its test cases against all seven
# raters with 16 hypotheses, S = 50 for the likelihood). Each writes runs/qubiq_cv/<name>/
# (fold<k>/, crossval.json) and its log to runs/qubiq_cv/<name>.log; a killed run continues when
# the same command is run again.
#   tools/results/qubiq.sh DATA_ROOT [NAME ...]        (default names: cnn categorical_cvae prob_unet)
#   ONLY="0" tools/results/qubiq.sh DATA_ROOT hybrid ssn   only these folds (crossval --only): the
#   families reported on one fold; crossval.json then pools the folds done and says partial
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${1:?usage: tools/results/qubiq.sh DATA_ROOT [NAME ...]}
shift
names=${*:-cnn categorical_cvae prob_unet}
PY=${PYTHON:-.venv/bin/python}
for name in $names; do
  out=runs/qubiq_cv/$name
  mkdir -p runs/qubiq_cv
  "$PY" tools/crossval.py --config "configs/qubiq_$name.yaml" --folds 5 --out "$out" \
    --samples 50 --no-progress ${ONLY:+--only $ONLY} data.root="$root" >>"$out.log" 2>&1
  echo "$(date -u +%FT%TZ) qubiq_$name: $out/crossval.json"
done
