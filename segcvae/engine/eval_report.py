"""Reports of an evaluation: plain-text and markdown tables of the metrics (what each means, "n/a"
with the reason for an undefined one) and the validation sample grid."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.engine.eval_loop import VisBatch


def format_table(metrics: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A plain-text table of metrics (per-class IoU on its own lines); an undefined metric (None)
    is ``n/a (<reason>)`` with its reason from ``metrics["undefined"]``."""
    lines = []
    width = max(
        [len(k) for k in metrics if k not in _NOT_ROWS]
        + [len(f"iou/{c}") for c in class_names or []]
        + [10]
    )
    undefined = metrics.get("undefined") or {}
    for k, v in metrics.items():
        if k in _NOT_ROWS:
            continue
        text = _fmt(v)
        if v is None and k in undefined:
            text += f" ({undefined[k]})"
        lines.append(f"{k:<{width}}  {text}")
    per_class = metrics.get("per_class_iou")
    if per_class is not None:
        names = class_names or [f"class_{i}" for i in range(len(per_class))]
        for name, v in zip(names, per_class, strict=False):
            lines.append(f"{'iou/' + name:<{width}}  {_fmt(v)}")
    return "\n".join(lines)


METRIC_DESCRIPTIONS = {
    "images": "images evaluated",
    "pixel_accuracy": "deterministic prediction vs the reference mask",
    "mean_iou": "mean IoU over classes, vs the reference mask",
    "pixel_accuracy_raters": "vs every rater (pooled over image-rater pairs)",
    "mean_iou_raters": "mean IoU vs every rater",
    "pixel_accuracy_majority": "vs the raters' majority vote",
    "mean_iou_majority": "mean IoU vs the majority vote",
    "nll": "-log p(y|x) in nats per image, mean over raters (lower is better)",
    "nll_mc": "the same, Monte Carlo over the prior",
    "ged": "squared GED, d = 1 - IoU (lower is better)",
    "majority_ged": "the data's reference: GED of the raters' majority mask as one hypothesis",
    "hm_iou": "Hungarian-matched IoU, hypotheses vs raters",
    "diversity": "mean pairwise IoU between hypotheses (lower = more diverse)",
    "rater_pairwise_iou": "mean pairwise IoU between raters (images with >= 2)",
    "ncc": "S_NCC: model uncertainty vs per-rater error maps (PHiSeg / SSN)",
    "soft_dice": "QUBIQ score: Dice at thresholds 0.1..0.9 vs rater frequency",
    "majority_soft_dice": "the data's reference: soft Dice of the raters' majority mask",
    "empty_share_error": "share of empty hypotheses vs of empty raters: mean absolute gap",
    "ece": "calibration error of the foreground probability vs rater frequency",
    "mode_purity": "hypotheses within IoU 0.9 of a plausible mask",
    "mode_coverage": "images with every plausible mask hit at IoU 0.9",
    "mode_freq_error": "how often each mode is drawn vs its probability: total variation, "
    "no-mode hypotheses included (data with mask probabilities; lower is better)",
}


def format_markdown(metrics: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A markdown table of metrics: ``| metric | value | meaning |``, per-class IoU last.

    An undefined metric (None) shows as ``n/a`` and its meaning ends with the reason from
    ``metrics["undefined"]``.

    Args:
        metrics: :attr:`EvalResult.metrics`.
        class_names: Names for ``per_class_iou``.
    """
    lines = ["| metric | value | meaning |", "|---|---:|---|"]
    undefined = metrics.get("undefined") or {}
    for k, v in metrics.items():
        if k in _NOT_ROWS:
            continue
        meaning = METRIC_DESCRIPTIONS.get(k, "")
        if not meaning and k.startswith("ged_"):
            meaning = f"squared GED with {k[4:]} hypotheses"
        if v is None and k in undefined:
            meaning = f"{meaning}; {undefined[k]}" if meaning else undefined[k]
        lines.append(f"| {k} | {_fmt(v)} | {meaning} |")
    per_class = metrics.get("per_class_iou")
    if per_class is not None:
        names = class_names or [f"class_{i}" for i in range(len(per_class))]
        for name, v in zip(names, per_class, strict=False):
            lines.append(f"| iou/{name} | {_fmt(v)} | IoU of this class vs the reference mask |")
    return "\n".join(lines)


_NOT_ROWS = ("per_class_iou", "undefined")  # shown otherwise (per class; beside each n/a)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def save_sample_grid(
    vis: VisBatch,
    path: Any,
    palette: list[tuple[int, int, int]] | list[list[int]],
    mean: list[float],
    std: list[float],
    num_hypotheses: int = 4,
    title: str = "",
) -> None:
    """Write the validation sample grid: image | ground truth | prediction | hypotheses | entropy."""
    from segcvae import viz

    k = vis.hypotheses.shape[1]
    fig = viz.validation_grid(
        images=[viz.denormalize(im, mean, std) for im in vis.images],
        targets=[t.numpy() for t in vis.targets],
        predictions=[p.numpy() for p in vis.predictions],
        hypotheses=[[h.numpy() for h in hs[: min(num_hypotheses, k)]] for hs in vis.hypotheses],
        entropy=[e.numpy() for e in vis.entropy],
        palette=palette,
        max_entropy=math.log(max(len(palette), 2)),
        title=title,
    )
    viz.save_figure(fig, path)
