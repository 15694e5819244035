"""Markdown tables for docs/RESULTS.md from the JSON files written by ``tools/evaluate.py --json``.

Expects ``RUNS/<prefix>_<model>/seed<k>/test_{clean,omission}.json`` and prints, for each setting,
one row per model found (ordered by family, as the registry lists them): pixel accuracy, mean IoU,
per-class IoU and negative CLL (nats per image; the estimator the report names and, for
comparison, plain Monte Carlo from the prior), as mean +- std over the seeds found (std only with
two or more seeds).

With ``--prefix qubiq`` (multi-rater data, ``tools/results/qubiq.sh``) it reads
``RUNS/qubiq_<name>/seed<k>/test.json`` (and ``wall_s.txt``, the training wall time) and prints
one table of the multi-rater metrics: GED (16 and 100 hypotheses), HM-IoU, NCC, soft Dice, ECE,
NLL, hypothesis diversity beside the raters' pairwise IoU, accuracy / IoU against the majority
vote and against every rater, training time.

    python tools/results/tables.py --runs runs --prefix lfw_cpu
    python tools/results/tables.py --runs runs --prefix qubiq
    python tools/results/tables.py --crossval runs/qubiq_cv   # segcvae crossval's results
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from segcvae.registry import family_names


def run_names(runs: Path, prefix: str, report: str) -> list[str]:
    """The models with results: ``runs/<prefix>_<name>/seed*/<report>``, in the order of their
    family in the registry (``model.arch``; Sohn et al.'s objectives and variants after the CNNs),
    then by name."""
    found = {}
    for folder in sorted(runs.glob(f"{prefix}_*")):
        reports = sorted(folder.glob(f"seed*/{report}"))
        if reports and folder.is_dir():
            arch = json.loads(reports[0].read_text()).get("arch", "")
            found[folder.name.removeprefix(f"{prefix}_")] = arch
    order = family_names()
    return sorted(found, key=lambda n: (order.index(found[n]) if found[n] in order else 99, n))


def estimator(report: dict) -> str:
    """How the report's NLL was estimated (``nll_estimator``, written by tools/evaluate.py)."""
    method = report.get("nll_estimator")
    if method is None:
        return "—"
    return "exact" if method == "exact" else f"{method.upper()}, S={report.get('samples')}"


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
    for obj in run_names(runs, prefix, f"test_{setting}.json"):
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
            cols += ["GED (16 hyp.)", "diversity (hyp. pairwise IoU)"]
            header = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)
        per_class = [[r["per_class_iou"][k] for r in reports] for k in range(len(names))]
        row = [
            obj,
            str(len(reports)),
            str(reports[0]["images"]),
            _fmt([r["pixel_accuracy"] for r in reports], 100),
            _fmt([r["mean_iou"] for r in reports], 100),
            *[_fmt(v, 100) for v in per_class],
            _fmt([r["nll"] for r in reports], 1, 1) if "nll" in reports[0] else "—",
            estimator(reports[0]),
            _fmt([r["nll_mc"] for r in reports], 1, 1) if "nll_mc" in reports[0] else "—",
            _fmt([r["ged"] for r in reports if "ged" in r], 1, 3),
            _fmt([r["diversity"] for r in reports if "diversity" in r], 1, 3),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([header or "(no results)", *lines])


# (column, JSON key, scale, digits) of the multi-rater table; lower is better for GED, ECE, NLL.
MULTI_RATER_COLUMNS = (
    ("GED (16)", "ged", 1, 3),
    ("GED (100)", "ged_100", 1, 3),
    ("HM-IoU", "hm_iou", 1, 3),
    ("NCC", "ncc", 1, 3),
    ("soft Dice", "soft_dice", 1, 3),
    ("ECE", "ece", 1, 4),
    ("NLL (nats/image)", "nll", 1, 0),
)
MULTI_RATER_AGREEMENT = (
    ("acc. majority (%)", "pixel_accuracy_majority", 100, 2),
    ("IoU majority (%)", "mean_iou_majority", 100, 1),
    ("acc. raters (%)", "pixel_accuracy_raters", 100, 2),
    ("IoU raters (%)", "mean_iou_raters", 100, 1),
)


def _train_seconds(run: Path) -> float | None:
    """Training wall time of a run from ``wall_s.txt`` (``train <seconds>``), None if absent."""
    path = run / "wall_s.txt"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "train":
            return float(value)
    return None


def multi_rater_table(
    runs: Path, prefix: str = "qubiq", seeds: list[int] | None = None, name: str = "test.json"
) -> str:
    """Two markdown tables of the multi-rater metrics, a row per model, mean ± std over seeds.

    The first: GED (16 and 100 hypotheses), HM-IoU, NCC, soft Dice, ECE, NLL and its estimator;
    the second: the hypotheses' mean pairwise IoU beside the raters', accuracy / IoU against the
    majority vote and against every rater, and the training wall time. Reads
    ``runs/<prefix>_<model>/seed<k>/<name>``; a metric missing from a report or null in it (e.g.
    ``ncc`` of the CNN, whose hypotheses are all alike: ``"undefined"`` says why) shows as "—".
    NaN values are left out of the mean.
    """
    cols_a = ["model", "seeds"] + [c[0] for c in MULTI_RATER_COLUMNS] + ["NLL estimator"]
    cols_b = ["model", "seeds", "diversity (hyp. pairwise IoU)", "raters' pairwise IoU"]
    cols_b += [c[0] for c in MULTI_RATER_AGREEMENT] + ["training (min)"]
    table_a = ["| " + " | ".join(cols_a) + " |", "|" + "---|" * len(cols_a)]
    table_b = ["| " + " | ".join(cols_b) + " |", "|" + "---|" * len(cols_b)]
    for obj in run_names(runs, prefix, name):
        paths = [
            p
            for p in sorted((runs / f"{prefix}_{obj}").glob(f"seed*/{name}"))
            if seeds is None or int(p.parent.name.removeprefix("seed")) in seeds
        ]
        if not paths:
            continue
        reports = [json.loads(p.read_text()) for p in paths]

        def col(key: str, scale: float, digits: int, reports: list[dict] = reports) -> str:
            values = [  # numbers only: not NaN, not null (undefined, see "undefined")
                r[key] for r in reports if isinstance(r.get(key), (int, float)) and r[key] == r[key]
            ]
            return _fmt(values, scale, digits)

        minutes = [t / 60 for t in (_train_seconds(p.parent) for p in paths) if t is not None]
        row_a = [obj, str(len(reports))]
        row_a += [col(key, scale, digits) for _, key, scale, digits in MULTI_RATER_COLUMNS]
        row_a.append(estimator(reports[0]))
        row_b = [obj, str(len(reports)), col("diversity", 1, 3), col("rater_pairwise_iou", 1, 3)]
        row_b += [col(key, scale, digits) for _, key, scale, digits in MULTI_RATER_AGREEMENT]
        row_b.append(_fmt(minutes, 1, 1))
        table_a.append("| " + " | ".join(row_a) + " |")
        table_b.append("| " + " | ".join(row_b) + " |")
    if len(table_a) == 2:
        return "(no results)"
    return "\n".join(table_a) + "\n\n" + "\n".join(table_b)


# (column, key, digits) of the cross-validation table: pooled over cases, then across folds.
CROSSVAL_COLUMNS = (
    ("GED", "ged", 3),
    ("HM-IoU", "hm_iou", 3),
    ("NCC", "ncc", 3),
    ("soft Dice", "soft_dice", 3),
    ("diversity (hyp. pairwise IoU)", "diversity", 3),
    ("NLL (nats/image)", "nll", 0),
)


def crossval_table(folder: Path) -> str:
    """A markdown table of ``<folder>/<name>/crossval.json``: a row per model, each metric pooled
    over all cases (mean ± std across folds beneath it in the same cell), with the data's own
    references (majority mask's GED and soft Dice, raters' pairwise IoU) and the training time
    per fold."""
    runs = sorted(p for p in folder.glob("*/crossval.json"))
    if not runs:
        return "(no results)"
    cols = ["model", "folds", "cases", *[c for c, _, _ in CROSSVAL_COLUMNS], "min / fold"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    reference = None
    for path in runs:
        s = json.loads(path.read_text())
        done = str(len(s["folds"])) + (f" of {s['folds_total']}" if s.get("partial") else "")
        row = [path.parent.name, done, str(s["cases"])]
        for _, key, digits in CROSSVAL_COLUMNS:
            pooled, across = s["pooled"].get(key), s["across_folds"].get(key)
            if pooled is None:
                row.append("—")
                continue
            spread = (
                f" ({across['mean']:.{digits}f} ± {across['std']:.{digits}f})" if across else ""
            )
            row.append(f"{pooled:.{digits}f}{spread}")
        minutes = [f["train_s"] / 60 for f in s["folds"] if f.get("train_s")]
        row.append(_fmt(minutes, 1, 1))
        lines.append("| " + " | ".join(row) + " |")
        reference = reference or s["pooled"]
    refs = ", ".join(
        f"{name} {reference[key]:.3f}"
        for name, key in (
            ("majority mask GED", "majority_ged"),
            ("majority mask soft Dice", "majority_soft_dice"),
            ("raters' pairwise IoU", "rater_pairwise_iou"),
        )
        if reference and key in reference
    )
    return "\n".join(lines) + (
        f"\n\nThe data's own references over the same cases: {refs}." if refs else ""
    )


def fold_table(folder: Path, fold: int) -> str:
    """A markdown table of one fold of every ``<folder>/<name>/fold<k>/test.json``: the models
    side by side on the same test cases (families run on one fold only), with that fold's
    references."""
    runs = sorted(folder.glob(f"*/fold{fold}/test.json"))
    if not runs:
        return "(no results)"
    cols = ["model", "cases", "step", *[c for c, _, _ in CROSSVAL_COLUMNS], "majority GED"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for path in runs:
        r = json.loads(path.read_text())
        row = [
            path.parent.parent.name,
            str(len(r.get("per_image", [])) or r.get("images")),
            str(r["step"]),
        ]
        for _, key, digits in CROSSVAL_COLUMNS:
            v = r.get(key)
            row.append("—" if not isinstance(v, (int, float)) or v != v else f"{v:.{digits}f}")
        row.append(f"{r['majority_ged']:.3f}" if r.get("majority_ged") is not None else "—")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--prefix", default="lfw_cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds")
    p.add_argument(
        "--crossval", type=Path, default=None, help="a folder of <name>/crossval.json to tabulate"
    )
    p.add_argument("--fold", type=int, default=None, help="with --crossval: one fold, all models")
    args = p.parse_args(argv)
    if args.crossval is not None:
        table = crossval_table if args.fold is None else lambda f: fold_table(f, args.fold)
        print(table(args.crossval))
        return 0
    if args.prefix.startswith("qubiq"):
        print(multi_rater_table(args.runs, args.prefix, args.seeds))
        return 0
    for setting in ("clean", "omission"):
        print(f"### {setting}\n")
        print(table(args.runs, args.prefix, setting, args.seeds))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
