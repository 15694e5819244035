"""Validation curves of several runs side by side: a Markdown table (a row per evaluation step, a
column per run) of one validation metric from each run's ``metrics.jsonl``, and optionally a PNG.

Usage (the QUBIQ schedule's curves in docs/RESULTS.md, fold 0 of each family):

    python tools/results/curves.py --metric ged --reference 0.111 \
        --runs runs/qubiq_cv/{cnn,categorical_cvae,prob_unet,hybrid}/fold0 \
        --png docs/figures/results/qubiq_val_curves.png

A run's name in the table is its folder's parent's name when the folder is ``foldN`` (a
cross-validation fold), its own name otherwise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run: Path, metric: str) -> dict[int, float]:
    """``{step: val[metric]}`` from ``run/metrics.jsonl`` (the last entry per step wins)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (a run folder of tools/train.py was expected)")
    curve: dict[int, float] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        value = row.get("val", {}).get(metric)
        if value is not None:
            curve[int(row["step"])] = float(value)
    return curve


def run_name(run: Path) -> str:
    return f"{run.parent.name}/{run.name}" if run.name.startswith("fold") else run.name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders")
    p.add_argument("--metric", default="ged", help="a key of the 'val' entries (ged, hm_iou, ...)")
    p.add_argument(
        "--reference", type=float, help="a horizontal line in the PNG (e.g. majority_ged)"
    )
    p.add_argument("--png", type=Path, help="also draw the curves here")
    args = p.parse_args(argv)
    curves = {run_name(r): read_curve(r, args.metric) for r in args.runs}
    steps = sorted({s for c in curves.values() for s in c})
    print(f"| step | {' | '.join(curves)} |")
    print(f"|---:|{'---:|' * len(curves)}")
    for s in steps:
        cells = [f"{c[s]:.4f}" if s in c else "" for c in curves.values()]
        print(f"| {s} | {' | '.join(cells)} |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
        for name, c in curves.items():
            ax.plot(sorted(c), [c[s] for s in sorted(c)], marker="o", markersize=3, label=name)
        if args.reference is not None:
            ax.axhline(args.reference, color="k", linestyle="--", linewidth=1, label="reference")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"validation {args.metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
