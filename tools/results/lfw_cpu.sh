#!/usr/bin/env bash
# The LFW CPU protocol of docs/RESULTS.md: train and/or evaluate configs/lfw_cpu_<objective>.yaml.
#
#   tools/results/lfw_cpu.sh all SEED OBJECTIVE...     # train, then test clean + with omission
#   tools/results/lfw_cpu.sh train SEED OBJECTIVE...
#   tools/results/lfw_cpu.sh eval SEED OBJECTIVE...
#
# e.g. the three seeds of the four models:  for s in 0 1 2; do tools/results/lfw_cpu.sh all $s cnn hybrid cvae gsnn; done
# Environment: LFW_ROOT (default ../shared/data/lfw), LFW_MASKS (an extracted label folder; default
# "": the loader extracts LFW_ROOT/parts_lfw_funneled_gt_images.tgz once into its cache),
# PYTHON (default .venv/bin/python). One thread per run: on a shared 2-core machine, two OpenMP
# threads fighting other processes were 2x slower than one.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=$1; seed=$2; shift 2
PY=${PYTHON:-.venv/bin/python}
ROOT=${LFW_ROOT:-../shared/data/lfw}
MASKS=${LFW_MASKS:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for obj in "$@"; do
  run=runs/lfw_cpu_$obj/seed$seed
  mkdir -p "$run"
  if [[ $what == train || $what == all ]]; then
    "$PY" tools/train.py --config configs/lfw_cpu_$obj.yaml --out "$run" --no-progress \
      train.seed=$seed data.root=$ROOT data.lfw_masks="$MASKS" 2>&1 | tee "$run/train.log"
  fi
  if [[ $what == eval || $what == all ]]; then
    for setting in clean omission; do
      flag=""; [[ $setting == omission ]] && flag=--omission
      start=$(date +%s)
      "$PY" tools/evaluate.py --ckpt "$run/best.pt" --split test --samples 50 --hypotheses 0 \
        $flag --json "$run/test_$setting.json" --quiet data.root=$ROOT data.lfw_masks="$MASKS"
      echo "evaluate $obj seed $seed $setting: $(( $(date +%s) - start )) s"
    done
  fi
done
