"""k-fold cross-validation: train and evaluate one model per fold, pool the per-case metrics.

``segcvae crossval --config C --folds 5 --out DIR [k=v ...]`` deals the items of the dataset's
splits into k folds (``data.cv_*``, :mod:`segcvae.data.folds`), and for each fold f trains
``DIR/fold<f>`` (validation carved from the fold's training items; ``best.pt`` chosen by
``train.select``) and evaluates its ``best.pt`` on the fold's test items into
``DIR/fold<f>/test.json`` (the metrics and every case's own values). ``DIR/crossval.json`` then
holds, under ``pooled``, each per-case metric averaged over all cases of all folds (every case is
tested once), and under ``folds`` each fold's metrics, with their mean and standard deviation
across folds in ``across_folds``; the data's own references (``majority_ged``,
``majority_soft_dice``, ``rater_pairwise_iou``) sit beside the model's numbers.

A killed run is continued by the same command: finished folds are kept, the fold that was
training resumes from its ``last.pt`` (at the step of that checkpoint), a fold whose training ended
is evaluated. ``DIR/crossval_settings.json`` records the command's settings; another config or
other overrides in the same ``--out`` is an error.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

from segcvae.config import Config, ConfigError

log = logging.getLogger("segcvae")

#: Per-case metrics reported for every fold and pooled over all cases (when the model and the
#: data define them), in this order.
POOLED_METRICS = (
    "ged",
    "majority_ged",
    "hm_iou",
    "ncc",
    "soft_dice",
    "majority_soft_dice",
    "diversity",
    "rater_pairwise_iou",
    "empty_share_error",
    "mode_freq_error",
    "nll",
)
#: Metrics of a whole fold (counts over its pixels), reported across folds only.
FOLD_METRICS = ("pixel_accuracy", "mean_iou", "mean_iou_majority", "ece")


def fold_overrides(folds: int, fold: int, seed: int) -> list[str]:
    """The config overrides that make fold ``fold`` of ``folds`` (dealt with ``seed``)."""
    return [f"data.cv_folds={folds}", f"data.cv_fold={fold}", f"data.cv_seed={seed}"]


def _settings(config: Path | None, overrides: list[str], folds: int, seed: int) -> dict[str, Any]:
    return {
        "config": None if config is None else str(config),
        "overrides": list(overrides),
        "folds": folds,
        "folds_seed": seed,
    }


def _without_eval(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings with their ``eval.*`` overrides left out (what a --retest may change)."""
    keep = [o for o in settings.get("overrides", []) if not o.lstrip("-").startswith("eval.")]
    return {**settings, "overrides": keep}


def check_settings(out: Path, settings: dict[str, Any], retest: bool = False) -> None:
    """Record the command's settings in ``out``, or refuse another command's folder.

    Args:
        out: The cross-validation folder.
        settings: This command's (:func:`_settings`).
        retest: Compare without the ``eval.*`` overrides, and record nothing (a --retest).

    Raises:
        ConfigError: ``out`` holds a cross-validation of other settings (named), or none
            (``retest``).
    """
    path = out / "crossval_settings.json"
    if retest and not path.is_file():
        raise ConfigError(f"--retest: {out} holds no cross-validation to test again")
    if path.is_file():
        before = json.loads(path.read_text())
        if retest:
            before, settings = _without_eval(before), _without_eval(settings)
        if before != settings:
            diff = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
            raise ConfigError(
                f"{out} holds a cross-validation with other settings ({diff}: before, now); "
                "continue it with the same command, or give a new --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def check_fold_run(run: Path, cfg: Config) -> None:
    """Refuse to continue a fold whose ``last.pt`` was trained with another config.

    Raises:
        ConfigError: naming the first keys that differ.
    """
    from segcvae.engine.checkpoint import load_checkpoint

    stored = Config.from_dict(load_checkpoint(run / "last.pt")["config"], f"{run}/last.pt")
    now, before = cfg.to_dict(), stored.to_dict()
    diff = [
        f"{section}.{key}: {before[section].get(key)!r} -> {value!r}"
        for section, values in now.items()
        for key, value in values.items()
        if before[section].get(key) != value
    ]
    if diff:
        raise ConfigError(
            f"{run}/last.pt was trained with another config ({'; '.join(diff[:3])}"
            f"{f'; {len(diff) - 3} more' if len(diff) > 3 else ''}); give a new --out"
        )


def evaluate_fold(
    cfg: Config,
    run: Path,
    samples: int | None,
    hypotheses: int | None,
    eval_overrides: list[str] | None = None,
) -> dict:
    """Evaluate ``run/best.pt`` on the fold's test items: metrics, per-case values, the step.

    ``eval_overrides`` (``eval.key=value``) change the checkpoint's evaluation settings (a
    --retest); by default the test uses the settings the fold was trained and validated with.
    """
    from segcvae.engine.checkpoint import load_checkpoint
    from segcvae.evaluation import evaluate

    ckpt = load_checkpoint(run / "best.pt")
    report = evaluate(
        ckpt, split="test", samples=samples, hypotheses=hypotheses, overrides=eval_overrides or []
    )
    return {
        "fold": report.config.data.cv_fold,
        "step": report.step,
        "select": ckpt.get("select", "mean_iou"),
        "best_metric": ckpt.get("best_metric"),
        "samples": report.samples,
        "hypotheses": report.hypotheses,
        **report.metrics,
        "per_image": report.per_image,
    }


def _mean(values: list[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.fmean(numbers) if numbers else None


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the folds' reports: per-case metrics over all cases, every metric across folds.

    Returns:
        ``{"pooled": {metric: mean over cases}, "across_folds": {metric: {"mean", "std"}},
        "folds": [{metric: value, "fold", "step", "cases", "train_s"}], "cases": n}``.
    """
    cases = [row for r in reports for row in r["per_image"]]
    pooled = {k: _mean([row.get(k) for row in cases]) for k in POOLED_METRICS}
    folds = []
    for r in reports:
        keep = {k: r.get(k) for k in (*POOLED_METRICS, *FOLD_METRICS) if k in r}
        folds.append(
            {"fold": r["fold"], "step": r["step"], "cases": len(r["per_image"]), **keep}
            | {"train_s": r.get("train_s")}
        )
    across = {}
    for k in (*POOLED_METRICS, *FOLD_METRICS):
        values = [f[k] for f in folds if isinstance(f.get(k), (int, float)) and f[k] == f[k]]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            across[k] = {"mean": statistics.fmean(values), "std": std}
    pooled = {k: v for k, v in pooled.items() if v is not None}
    return {"cases": len(cases), "pooled": pooled, "across_folds": across, "folds": folds}


def format_summary(summary: dict[str, Any]) -> str:
    """A markdown table: metric | pooled over the cases | mean ± std across folds."""
    done = len(summary["folds"])
    of = f" of {summary['folds_total']}" if summary.get("partial") else ""
    lines = [
        f"{summary['cases']} cases in {done}{of} folds" + (" (partial)" if of else ""),
        "",
        "| metric | pooled | mean ± std across folds |",
        "|---|---:|---:|",
    ]
    for k in (*POOLED_METRICS, *FOLD_METRICS):
        pooled = summary["pooled"].get(k)
        across = summary["across_folds"].get(k)
        if pooled is None and across is None:
            continue
        cell = "—" if pooled is None else f"{pooled:.4f}"
        spread = "—" if across is None else f"{across['mean']:.4f} ± {across['std']:.4f}"
        lines.append(f"| {k} | {cell} | {spread} |")
    return "\n".join(lines)


def crossval(
    config: str | Path | None,
    out: str | Path,
    folds: int = 5,
    overrides: list[str] | None = None,
    folds_seed: int = 0,
    samples: int | None = None,
    hypotheses: int | None = None,
    progress: bool = False,
    only: list[int] | None = None,
    retest: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every fold into ``out`` (resuming what a killed run left), then pool.

    Args:
        config: The experiment YAML (None: the defaults).
        out: The cross-validation folder (``fold<k>/`` per fold, ``crossval.json``).
        folds: k >= 2.
        overrides: ``section.key=value`` changes to the config, for every fold.
        folds_seed: Seed of the deal into folds (``data.cv_seed``).
        samples: S for the test likelihood (None: ``eval.samples``).
        hypotheses: Hypotheses per test image (None: ``eval.hypotheses``).
        progress: Progress bars.
        only: Train and evaluate only these folds (e.g. one fold of a costly model); the summary
            then pools every fold finished in ``out`` so far and says ``"partial": true`` when
            that is not all k.
        retest: Train nothing: test every finished fold's ``best.pt`` again (all folds, or
            ``only``) with this command's ``eval.*`` overrides, which may differ from the
            training's (every other setting must match), rewriting ``fold<k>/test.json`` and
            ``crossval.json`` (whose ``retest`` lists those overrides). For an evaluation
            setting chosen after training, e.g. ``eval.hypothesis_masks``.

    Returns:
        The summary written to ``out/crossval.json`` (:func:`summarise`), with ``folds_done``.

    Raises:
        ConfigError: a bad config or override, or ``out`` holds another cross-validation.
    """
    from segcvae.engine.logger import write_json
    from segcvae.engine.run import train

    out = Path(out)
    overrides = list(overrides or [])
    config = None if config is None else Path(config)
    if folds < 2:
        raise ConfigError(f"--folds: expected 2 or more, got {folds}")
    cfgs = [
        Config.from_yaml(config, [*overrides, *fold_overrides(folds, f, folds_seed)])
        for f in range(folds)
    ]  # every fold's config checked before any training
    wanted = set(range(folds)) if only is None else set(only)
    if not wanted or not wanted <= set(range(folds)):
        raise ConfigError(
            f"--only: expected fold numbers in 0..{folds - 1}, got {sorted(only or [])}"
        )
    check_settings(out, _settings(config, overrides, folds, folds_seed), retest=retest)
    eval_overrides = [o.lstrip("-") for o in overrides if o.lstrip("-").startswith("eval.")]
    for fold, cfg in enumerate(cfgs):
        run = out / f"fold{fold}"
        report_path = run / "test.json"
        if fold not in wanted:
            continue
        if retest:
            if not (run / "best.pt").is_file() or not report_path.is_file():
                if only is None and not (run / "last.pt").is_file():
                    continue  # a fold never started (an --only cross-validation): nothing to test
                raise ConfigError(f"--retest: fold {fold} has not finished ({run}); train it first")
            before = json.loads(report_path.read_text())
            log.info("fold %d: testing %s again with %s", fold, run / "best.pt", eval_overrides)
            report = evaluate_fold(cfg, run, samples, hypotheses, eval_overrides)
            report |= {"train_s": before.get("train_s"), "retest": eval_overrides}
            write_json(report_path, report)
            continue
        if report_path.is_file():
            log.info("fold %d: done (%s)", fold, report_path)
            continue
        log.info("fold %d of %d -> %s", fold, folds, run)
        fresh = not (run / "last.pt").is_file()
        if not fresh:
            check_fold_run(run, cfg)
        summary = train(cfg, run, resume=True, progress=progress)
        # the training time of a fold trained in one go (a resumed fold's is not known whole)
        train_s = summary["wall_s"] if fresh else None
        report = evaluate_fold(cfg, run, samples, hypotheses) | {"train_s": train_s}
        write_json(report_path, report)
    # every fold finished in `out` by now, this command's or another's (--only)
    paths = [out / f"fold{f}" / "test.json" for f in range(folds)]
    reports = [json.loads(p.read_text()) for p in paths if p.is_file()]
    done = [int(r["fold"]) for r in reports]
    summary = {
        **_settings(config, overrides, folds, folds_seed),
        "folds_done": done,
        "folds_total": folds,
        "partial": len(done) < folds,
        **({"retest": eval_overrides} if retest else {}),
        **summarise(reports),
    }
    write_json(out / "crossval.json", summary)
    return summary
