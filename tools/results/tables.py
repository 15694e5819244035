"""Markdown tables for docs/RESULTS.md from the JSON files written by ``tools/evaluate.py --json``.

Expects ``RUNS/<prefix>_<objective or family>/seed<k>/test_{clean,omission}.json`` and prints, for
each setting, one row per objective (and per model family: prob_unet, ssn): pixel accuracy, mean
IoU, per-class IoU and negative CLL (nats per image; the
paper's estimator and, for comparison, plain Monte Carlo from the prior), as mean +- std over the seeds found (std only with two or more seeds).

    python tools/results/tables.py --runs runs --prefix lfw_cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Sohn et al.'s objectives, then the other model families (runs named <prefix>_<arch>).
OBJECTIVES = ("cnn", "gsnn", "cvae", "hybrid", "prob_unet", "ssn")
ESTIMATORS = {"cnn": "exact", "gsnn": "MC, S=50", "ssn": "MC, S=50"}  # the others: IS, S=50


def _fmt(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values]
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: Path, prefix: str, setting: str, seeds: list[int] | None = None) -> str:
    """One markdown table for ``setting`` in {"clean", "omission"}."""
    header = None
    lines = []
    for obj in OBJECTIVES:
        reports = [
            json.loads(p.read_text())
            for p in sorted((runs / f"{prefix}_{obj}").glob(f"seed*/test_{setting}.json"))
            if seeds is None or int(p.parent.name.removeprefix("seed")) in seeds
        ]
        if not reports:
            continue
        names = reports[0]["class_names"]
        if header is None:
            cols = ["model", "seeds", "images", "pixel acc. (%)", "mean IoU (%)"]
            cols += [f"IoU {n} (%)" for n in names]
            cols += ["−CLL (nats/image)", "estimator", "−CLL, MC from the prior"]
            header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
        per_class = [[r["per_class_iou"][k] for r in reports] for k in range(len(names))]
        estimator = ESTIMATORS.get(obj, "IS, S=50")
        row = [
            obj,
            str(len(reports)),
            str(reports[0]["images"]),
            _fmt([r["pixel_accuracy"] for r in reports], 100),
            _fmt([r["mean_iou"] for r in reports], 100),
            *[_fmt(v, 100) for v in per_class],
            _fmt([r["nll"] for r in reports], 1, 1) if "nll" in reports[0] else "—",
            estimator,
            _fmt([r["nll_mc"] for r in reports], 1, 1) if "nll_mc" in reports[0] else "—",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([header or "(no results)", *lines])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--prefix", default="lfw_cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds")
    args = p.parse_args(argv)
    for setting in ("clean", "omission"):
        print(f"### {setting}\n")
        print(table(args.runs, args.prefix, setting, args.seeds))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
