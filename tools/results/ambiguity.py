"""The families x ambiguity-kinds protocol of docs/RESULTS.md: train, evaluate, tabulate.

Each row of the table is one model on one data set: the default family (the data's own config,
e.g. ``configs/shapes_exclusive.yaml``) and the baselines the field compares with, trained from
the same config with only ``model.arch`` changed (the same U-Net, data, schedule and seed): the
CNN with arg-max hypotheses and with level-set hypotheses (one checkpoint, evaluated twice), MC
dropout and a deep ensemble (each with its family's default settings). Per run it writes ``RUNS/<data>/<model>/seed<k>/`` with the training log,
``wall_s.txt`` (training wall time) and ``test.json`` (``tools/evaluate.py --json`` on the test
split, 16 hypotheses, S = 50 for the likelihood); a run whose ``test.json`` exists is not run
again, so a killed protocol continues where it stopped.

    python tools/results/ambiguity.py run --data exclusive independent --models default cnn
    python tools/results/ambiguity.py run --data flip --seeds 0 1 2   # three seeds
    python tools/results/ambiguity.py table             # the markdown table of every run found
    python tools/results/ambiguity.py summary           # the default against the strongest baseline
    python tools/results/ambiguity.py floor             # what an oracle drawing the true modes scores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Data sets: name -> the default family's config on it (every model starts from it).
DATA: dict[str, str] = {
    "nested": "configs/shapes_cvae.yaml",
    "exclusive": "configs/shapes_exclusive.yaml",
    "independent": "configs/shapes_independent.yaml",
    "flip": "configs/shapes_flip.yaml",
    "mixed": "configs/shapes_mixed.yaml",
    "lfw_flip": "configs/lfw_flip_cvae.yaml",  # with data.root=../shared/data/lfw
    "lesions": "configs/lesions_cvae.yaml",  # raters, not known modes: no mode-frequency error
}

#: Models: name -> overrides of the data's config (the family and what it needs).
MODELS: dict[str, list[str]] = {
    "default": [],
    "cnn": ["model.arch=cnn"],
    "mc_dropout": ["model.arch=mc_dropout"],
    "ensemble": ["model.arch=ensemble"],
    "hybrid": ["model.arch=sohn", "model.latent=spatial", "loss.objective=hybrid"],
    "prob_unet": ["model.arch=prob_unet"],
    "ssn": ["model.arch=ssn"],
}
#: Rows evaluated from another model's checkpoint: name -> (trained model, evaluate overrides).
DERIVED: dict[str, tuple[str, list[str]]] = {
    "cnn_level_sets": ("cnn", ["eval.hypothesis_masks=level_set"]),
}
LABELS = {
    "default": "default (categorical CVAE)",
    "cnn": "CNN, arg-max hypotheses",
    "cnn_level_sets": "CNN, level-set hypotheses",
    "mc_dropout": "MC dropout",
    "ensemble": "deep ensemble",
    "hybrid": "Sohn et al.'s hybrid (Gaussian z)",
    "prob_unet": "Prob. U-Net",
    "ssn": "SSN",
}
BASELINES = ("cnn", "cnn_level_sets", "mc_dropout", "ensemble")
#: The other generative families, against which the summary also sets the default.
GENERATIVE = ("hybrid", "prob_unet", "ssn")


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)


def run(runs: Path, data: list[str], models: list[str], seeds: list[int], extra: list[str]) -> None:
    """Train and evaluate every (data, model, seed) whose test.json is missing."""
    py = sys.executable
    for name in data:
        for model in models:
            for seed in seeds:
                out = runs / name / model / f"seed{seed}"
                report = out / "test.json"
                if report.is_file():
                    continue
                out.mkdir(parents=True, exist_ok=True)
                log = out / "train.log"
                if not (out / "best.pt").is_file() or not (out / "wall_s.txt").is_file():
                    start = time.time()
                    _run(
                        [py, "tools/train.py", "--config", DATA[name], "--out", str(out),
                         "--no-progress", *MODELS[model], *extra, f"train.seed={seed}"],
                        log,
                    )  # fmt: skip
                    (out / "wall_s.txt").write_text(f"{time.time() - start:.1f}\n")
                _evaluate(out, report, [], log)
                for row, (source, overrides) in DERIVED.items():
                    if source == model:
                        derived = runs / name / row / f"seed{seed}"
                        derived.mkdir(parents=True, exist_ok=True)
                        (derived / "wall_s.txt").write_text((out / "wall_s.txt").read_text())
                        _evaluate(out, derived / "test.json", overrides, log)
                print(
                    f"{time.strftime('%H:%M:%S')} {name}/{model}/seed{seed}: {report}", flush=True
                )


def _evaluate(out: Path, report: Path, overrides: list[str], log: Path) -> None:
    _run(
        [sys.executable, "tools/evaluate.py", "--ckpt", str(out / "best.pt"), "--split", "test",
         "--samples", "50", "--hypotheses", "16", "--json", str(report), "--quiet", *overrides],
        log,
    )  # fmt: skip


def _cell(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: Path) -> str:
    """One markdown table: a row per (data, model) found, metrics as mean ± std over seeds."""
    cols = ["data", "model", "seeds", "GED", "HM-IoU", "mode-freq. error", "purity", "coverage"]
    cols += ["NLL (nats/image)", "training (min)"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    order = ["default", "cnn", "cnn_level_sets", "mc_dropout", "ensemble", "hybrid", "prob_unet"]
    order += [m for m in [*MODELS, *DERIVED] if m not in order]
    for data_dir in _data_dirs(runs):
        models = sorted(
            (p for p in data_dir.iterdir() if p.is_dir()),
            key=lambda p: order.index(p.name) if p.name in order else 99,
        )
        for model_dir in models:
            reports = _reports(model_dir)
            if not reports:
                continue
            walls = [float(p.read_text()) / 60 for p in sorted(model_dir.glob("seed*/wall_s.txt"))]

            def get(key: str, reports: list[dict] = reports) -> list[float]:
                return [r.get(key) for r in reports]

            cells = [
                data_dir.name,
                LABELS.get(model_dir.name, model_dir.name),
                str(len(reports)),
                _cell(get("ged")),
                _cell(get("hm_iou")),
                _cell(get("mode_freq_error")),
                _cell(get("mode_purity")),
                _cell(get("mode_coverage")),
                _cell(get("nll"), 1),
                _cell(walls, 1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _data_dirs(runs: Path) -> list[Path]:
    """The data folders under ``runs``, in :data:`DATA`'s order (unknown names last)."""
    known = list(DATA)
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    return sorted(dirs, key=lambda p: (known.index(p.name) if p.name in known else 99, p.name))


def _reports(model_dir: Path) -> list[dict]:
    """The test.json of every seed of one model (none if the folder does not exist)."""
    return [json.loads(p.read_text()) for p in sorted(model_dir.glob("seed*/test.json"))]


def summary(runs: Path) -> str:
    """Per data set: the default's GED against the strongest baseline that was run (the lowest
    mean GED of the CNN's arg-max and level-set hypotheses, MC dropout and the ensemble), and
    their ratio (the means'), then the best of the other generative families that were run
    (Sohn's Gaussian hybrid, the Prob. U-Net, SSN; "—" if none); the README's results table is
    written from it."""
    lines = ["| data | default GED | strongest baseline | its GED | ratio | baselines run |"]
    lines[0] += " best other generative family | its GED |"
    lines.append("|---|---|---|---|---|---|---|---|")
    for data_dir in _data_dirs(runs):
        default = [r["ged"] for r in _reports(data_dir / "default")]
        baselines = {name: [r["ged"] for r in _reports(data_dir / name)] for name in BASELINES}
        baselines = {k: v for k, v in baselines.items() if v}
        if not default or not baselines:
            continue
        best = min(baselines, key=lambda k: statistics.fmean(baselines[k]))
        ratio = statistics.fmean(default) / statistics.fmean(baselines[best])
        cells = [
            data_dir.name,
            f"{_cell(default)} ({len(default)})",
            LABELS[best],
            f"{_cell(baselines[best])} ({len(baselines[best])})",
            f"{ratio:.2f}×",
            ", ".join(LABELS[k] for k in baselines),
        ]
        others = {name: [r["ged"] for r in _reports(data_dir / name)] for name in GENERATIVE}
        others = {k: v for k, v in others.items() if v}
        if others:
            rival = min(others, key=lambda k: statistics.fmean(others[k]))
            cells += [LABELS[rival], f"{_cell(others[rival])} ({len(others[rival])})"]
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floor(data: list[str], hypotheses: int, seed: int = 0) -> str:
    """The data's own reference: what a perfect model scores with ``hypotheses`` draws.

    The oracle draws the test items' true modes with their true probabilities, independently
    (iid) or by systematic sampling (as the default family draws its codes), so every hypothesis
    is a plausible mask: its mode-frequency error is the finite-sample floor of the metric (16
    draws cannot match 27 modes' probabilities), and its coverage the share of items whose modes
    16 draws can all hit. Its GED (systematic draws) is what a perfect model scores on GED with
    ``hypotheses`` draws: the estimator counts each hypothesis against itself, so it is not 0.
    """
    import torch

    from segcvae.config import Config
    from segcvae.data import build_dataset
    from segcvae.metrics import ged, plausible_masks
    from segcvae.models.latent import systematic_draws

    torch.manual_seed(seed)
    rows = ["| data | modes per item (mean, max) | oracle iid: mode-freq. error | coverage |"]
    rows[0] += " oracle systematic: mode-freq. error | coverage | GED |"
    rows.append("|---|---|---|---|---|---|---|")
    for name in data:
        cfg = Config.from_yaml(REPO / DATA[name])
        if cfg.data.name != "shapes":
            continue
        dataset = build_dataset(cfg.data, "test")
        counts, errors, geds = [], {"iid": [], "systematic": []}, []
        covered = {"iid": [], "systematic": []}
        for i in range(len(dataset)):
            item = dataset[i]
            probs = item.get("mask_probs")
            modes, p = plausible_masks(
                torch.as_tensor(item["masks"]), None if probs is None else torch.as_tensor(probs)
            )
            counts.append(len(p))
            draws = {
                "iid": torch.multinomial(p.float(), hypotheses, replacement=True),
                "systematic": systematic_draws(p[None].float(), hypotheses)[0],
            }
            for kind, d in draws.items():
                freq = torch.bincount(d, minlength=len(p)).double() / hypotheses
                errors[kind].append(0.5 * float((freq - p).abs().sum()))
                covered[kind].append(bool((freq > 0).all()))
            geds.append(ged(modes[draws["systematic"]], modes, dataset.num_classes, p))
        cells = [name, f"{statistics.fmean(counts):.1f}, {max(counts)}"]
        for kind in ("iid", "systematic"):
            cells += [
                f"{statistics.fmean(errors[kind]):.3f}",
                f"{statistics.fmean(covered[kind]):.3f}",
            ]
        cells.append(f"{statistics.fmean(geds):.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and evaluate what is missing")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "ambiguity")
    p.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    p.add_argument("--models", nargs="+", default=["default", *BASELINES[:1], *BASELINES[2:]])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("overrides", nargs="*", help="added to every training run (section.key=value)")
    t = sub.add_parser("table", help="print the markdown table of the runs found")
    t.add_argument("--runs", type=Path, default=REPO / "runs" / "ambiguity")
    m = sub.add_parser("summary", help="the default against the strongest baseline, per data set")
    m.add_argument("--runs", type=Path, default=REPO / "runs" / "ambiguity")
    f = sub.add_parser("floor", help="the data's own reference: an oracle drawing the true modes")
    f.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    f.add_argument("--hypotheses", type=int, default=16)
    args = parser.parse_args(argv)
    if args.command == "run":
        bad = [m for m in args.models if m not in MODELS]
        if bad:
            parser.error(f"--models: unknown {bad}; valid: {', '.join(MODELS)}")
        os.environ.setdefault("OMP_NUM_THREADS", "2")
        run(args.runs, args.data, args.models, args.seeds, args.overrides)
    elif args.command == "summary":
        print(summary(args.runs))
    elif args.command == "floor":
        print(floor(args.data, args.hypotheses))
    else:
        print(table(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
