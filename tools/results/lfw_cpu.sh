#!/usr/bin/env bash
# The LFW CPU protocols of docs/RESULTS.md: train and/or evaluate configs/<PREFIX>_<model>.yaml.
#
#   tools/results/lfw_cpu.sh all SEED OBJECTIVE...     # train, then test clean + with omission
#   tools/results/lfw_cpu.sh train SEED OBJECTIVE...
#   tools/results/lfw_cpu.sh eval SEED OBJECTIVE...
#
# e.g. the three seeds of the four models:  for s in 0 1 2; do tools/results/lfw_cpu.sh all $s cnn hybrid cvae gsnn; done
# The 64x64 refinement experiment (issue 11):
#   for s in 0 1 2; do PREFIX=lfw_cpu64 tools/results/lfw_cpu.sh all $s cnn refine_cnn refine_hybrid; done
# Environment: LFW_ROOT (default ../shared/data/lfw), LFW_MASKS (an extracted label folder; default
# "": the loader extracts LFW_ROOT/parts_lfw_funneled_gt_images.tgz once into its cache),
# PYTHON (default .venv/bin/python), PREFIX (default lfw_cpu: configs/lfw_cpu_*.yaml, 32x32;
# lfw_cpu64: configs/lfw_cpu64_*.yaml, 64x64), HYPOTHESES (default 0; e.g. 16 for the hypotheses' GED and
# diversity). One thread per run: on a shared 2-core machine, two OpenMP
# threads fighting other processes were 2x slower than one.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=$1; seed=$2; shift 2
PY=${PYTHON:-.venv/bin/python}
ROOT=${LFW_ROOT:-../shared/data/lfw}
MASKS=${LFW_MASKS:-}
PREFIX=${PREFIX:-lfw_cpu}
HYPOTHESES=${HYPOTHESES:-0}  # hypotheses per test image for GED / diversity (0 = none)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for obj in "$@"; do
  run=runs/${PREFIX}_$obj/seed$seed
  mkdir -p "$run"
  if [[ $what == train || $what == all ]]; then
    "$PY" tools/train.py --config configs/${PREFIX}_$obj.yaml --out "$run" --no-progress \
      train.seed=$seed data.root=$ROOT data.lfw_masks="$MASKS" 2>&1 | tee "$run/train.log"
  fi
  if [[ $what == eval || $what == all ]]; then
    for setting in clean omission; do
      flag=""; [[ $setting == omission ]] && flag=--omission
      start=$(date +%s)
      "$PY" tools/evaluate.py --ckpt "$run/best.pt" --split test --samples 50 --hypotheses "$HYPOTHESES" \
        $flag --json "$run/test_$setting.json" --quiet data.root=$ROOT data.lfw_masks="$MASKS"
      echo "evaluate $obj seed $seed $setting: $(( $(date +%s) - start )) s"
    done
  fi
done
