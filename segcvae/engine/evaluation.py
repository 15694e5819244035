"""The evaluation loop: segmentation metrics, conditional log-likelihood, multi-rater metrics.

Used by the trainer on the validation split (cheap settings) and by ``tools/evaluate.py`` (the
paper's settings). The model is evaluated in ``eval`` mode under a forked, seeded RNG, so the same
model gives the same numbers and evaluating does not disturb the training RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from segcvae.data.raters import majority_vote
from segcvae.inference import uncertainty
from segcvae.metrics import (
    SegmentationMeter,
    calibration_bins,
    diversity,
    ece_from_bins,
    generalized_energy_distance,
    hungarian_matched_iou,
    mode_coverage,
    mode_purity,
    negative_log_likelihoods,
    rater_frequency,
    rater_pairwise_iou,
    soft_dice,
    uncertainty_ncc,
)


@dataclass
class VisBatch:
    """A few evaluated images for the validation sample grid (all CPU).

    Attributes:
        images: (N, 3, H, W) normalised images.
        targets: (N, H, W) labels.
        predictions: (N, H, W) deterministic predictions.
        hypotheses: (N, S, H, W) sampled label maps.
        entropy: (N, H, W) entropy of the mean sampled prediction, in nats.
    """

    images: torch.Tensor
    targets: torch.Tensor
    predictions: torch.Tensor
    hypotheses: torch.Tensor
    entropy: torch.Tensor


@dataclass
class EvalResult:
    """Metrics (plain floats / lists) and, when asked for, a :class:`VisBatch`."""

    metrics: dict[str, Any] = field(default_factory=dict)
    vis: VisBatch | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    ignore_index: int = 255,
    samples: int = 50,
    hypotheses: int = 16,
    max_images: int = 0,
    num_vis: int = 0,
    seed: int = 0,
    progress: bool = False,
    extra_ged_hypotheses: int = 0,
    masks_are_modes: bool | None = None,
) -> EvalResult:
    """Evaluate a model on a loader of ``{"image", "mask", "masks", "num_masks"}`` batches.

    Every image is compared with all of its rater masks (``masks``, padded to the batch's largest
    R, ``num_masks`` real ones; a batch without ``masks`` has the one rater ``mask``). Only
    ``model.encode``, ``decode_mean``, ``decode_samples`` and the likelihood estimator are used.

    Args:
        model: A segcvae model (DDP is unwrapped).
        loader: Evaluation batches; ``image`` (B, 3, H, W), ``mask`` (B, H, W) the reference
            mask, optionally ``masks`` (B, R, H, W) and ``num_masks`` (B,).
        num_classes: K.
        ignore_index: Label value left out of every metric.
        samples: S for the likelihood estimates; 0 skips ``nll`` / ``nll_mc``.
        hypotheses: Sampled hypotheses per image for the multi-hypothesis metrics and the sample
            grid; 0 skips them.
        max_images: Stop after this many images (0 = all).
        num_vis: Keep this many images for a sample grid.
        seed: Seed of the evaluation RNG.
        progress: Show a progress bar.
        extra_ged_hypotheses: n > 0 also reports ``ged_<n>`` from n more hypotheses (costly).
        masks_are_modes: report ``mode_purity`` / ``mode_coverage`` (the masks are the complete
            set of plausible answers); None = the dataset's ``masks_are_modes`` attribute.

    Returns:
        :class:`EvalResult` with, against the reference mask, ``pixel_accuracy``, ``mean_iou``,
        ``per_class_iou``; against every rater (counts pooled over image-rater pairs)
        ``pixel_accuracy_raters`` / ``mean_iou_raters``, and against the raters' majority vote
        (ties to the foreground) ``pixel_accuracy_majority`` / ``mean_iou_majority``; ``nll`` (importance
        sampling when the model has a recognition net, exact for the CNN, Monte Carlo
        otherwise) and ``nll_mc``, in nats per image, each averaged over the image's raters;
        from the hypotheses ``ged``, ``hm_iou``, ``diversity`` (mean pairwise IoU between
        hypotheses), ``ncc`` (:func:`~segcvae.metrics.uncertainty_ncc`, over images where it is
        defined), ``soft_dice`` and ``ece`` (foreground probability = mean of the hypotheses'
        probabilities); ``rater_pairwise_iou`` for images with >= 2 raters; ``mode_purity`` /
        ``mode_coverage`` for mode data; ``images``. A per-image metric undefined for every image
        is left out (``ncc`` of a deterministic model, whose uncertainty map is flat;
        ``rater_pairwise_iou`` of one-rater data).
    """
    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if masks_are_modes is None:
        masks_are_modes = bool(_dataset_attr(loader.dataset, "masks_are_modes", False))
    meter = SegmentationMeter(num_classes, ignore_index)
    rater_meter = SegmentationMeter(num_classes, ignore_index)
    majority_meter = SegmentationMeter(num_classes, ignore_index)
    nll_is: list[torch.Tensor] = []
    nll_mc: list[torch.Tensor] = []
    per_image: dict[str, list[float]] = {}
    ece_bins = torch.zeros(3, 10, dtype=torch.float64)
    vis_parts: dict[str, list[torch.Tensor]] = {k: [] for k in VisBatch.__dataclass_fields__}
    n_vis = 0
    seen = 0
    fork_devices = [device] if device.type == "cuda" else []
    total = len(loader.dataset) if max_images <= 0 else min(max_images, len(loader.dataset))  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, leave=False)

    def nll_of(x: torch.Tensor, y: torch.Tensor, ctx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(-log p(y | x) by the model's best estimator, by Monte Carlo), each (B,)."""
        nll = negative_log_likelihoods(model, x, y, samples, ctx=ctx)
        return nll["nll"], nll["nll_mc"]

    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for batch in loader:
                x = batch["image"].to(device)
                y = batch["mask"].to(device)
                masks = batch.get("masks")
                masks = y.unsqueeze(1) if masks is None else masks.to(device)  # (B, R, H, W)
                num_masks = batch.get("num_masks")
                if num_masks is None:
                    num_masks = torch.full((x.shape[0],), masks.shape[1], dtype=torch.long)
                num_masks = num_masks.to(device)
                if max_images > 0 and seen + x.shape[0] > max_images:
                    keep = max_images - seen
                    x, y, masks, num_masks = x[:keep], y[:keep], masks[:keep], num_masks[:keep]
                b_size = x.shape[0]
                real = torch.arange(masks.shape[1], device=device) < num_masks.unsqueeze(1)
                gts = [masks[b, : int(num_masks[b])] for b in range(b_size)]  # R_b x (H, W)
                ctx = model.encode(x)  # image features once, shared by every estimate below
                pred = model.decode_mean(ctx).argmax(dim=1)  # (B, H, W)
                meter.update(pred, y)
                rater_meter.update(pred.unsqueeze(1).expand_as(masks)[real], masks[real])
                majority_meter.update(
                    pred, torch.stack([majority_vote(g, num_classes, ignore_index) for g in gts])
                )
                if samples > 0:
                    totals = [torch.zeros(b_size, device=device) for _ in range(2)]
                    for r in range(masks.shape[1]):  # padded raters are all ignore_index: nll 0
                        for acc, v in zip(totals, nll_of(x, masks[:, r], ctx), strict=True):
                            acc += v.float() * real[:, r]
                    nll_is.append((totals[0] / num_masks).cpu())
                    nll_mc.append((totals[1] / num_masks).cpu())
                want_vis = n_vis < num_vis
                if hypotheses > 0:
                    probs = model.decode_samples(ctx, hypotheses).softmax(dim=2)  # (B, S, K, H, W)
                    hyps = probs.argmax(dim=2)  # (B, S, H, W)
                    fg_prob = 1.0 - probs[:, :, 0].mean(dim=1)  # (B, H, W)
                    extra = _extra_hypotheses(model, ctx, extra_ged_hypotheses)
                    for b in range(b_size):
                        _image_metrics(
                            per_image, hyps[b], gts[b], fg_prob[b], num_classes, masks_are_modes
                        )
                        freq, valid = rater_frequency(gts[b], num_classes)
                        ece_bins += calibration_bins(fg_prob[b], freq, valid).cpu()
                        if extra is not None:
                            key = f"ged_{extra_ged_hypotheses}"
                            per_image.setdefault(key, []).append(
                                generalized_energy_distance(extra[b], gts[b], num_classes)
                            )
                    if want_vis:
                        k = min(num_vis - n_vis, b_size)
                        ent = uncertainty(probs[:k])["entropy"]
                        for name, t in (
                            ("images", x[:k]),
                            ("targets", y[:k]),
                            ("predictions", pred[:k]),
                            ("hypotheses", hyps[:k]),
                            ("entropy", ent),
                        ):
                            vis_parts[name].append(
                                t.float().cpu() if name in ("images", "entropy") else t.cpu()
                            )
                        n_vis += k
                seen += b_size
                bar.update(b_size)
                if max_images > 0 and seen >= max_images:
                    break
    finally:
        bar.close()
        model.train(was_training)
    metrics: dict[str, Any] = dict(meter.compute())
    metrics["images"] = seen
    for suffix, m in (("raters", rater_meter), ("majority", majority_meter)):
        counts = m.compute()
        metrics[f"pixel_accuracy_{suffix}"] = counts["pixel_accuracy"]
        metrics[f"mean_iou_{suffix}"] = counts["mean_iou"]
    if nll_is:
        metrics["nll"] = float(torch.cat(nll_is).mean())
        metrics["nll_mc"] = float(torch.cat(nll_mc).mean())
    for key in METRIC_ORDER + sorted(k for k in per_image if k.startswith("ged_")):
        values = [v for v in per_image.get(key, []) if not math.isnan(v)]
        if values:
            metrics[key] = float(np.mean(values))
    if per_image:
        metrics["ece"] = ece_from_bins(ece_bins)
    vis = None
    if n_vis > 0:
        vis = VisBatch(**{k: torch.cat(v) for k, v in vis_parts.items()})
    return EvalResult(metrics=metrics, vis=vis)


# Per-image metrics, averaged over the images where they are defined (NaN values are left out).
METRIC_ORDER = [
    "ged",
    "hm_iou",
    "diversity",
    "rater_pairwise_iou",
    "ncc",
    "soft_dice",
    "mode_purity",
    "mode_coverage",
]


def _image_metrics(
    out: dict[str, list[float]],
    hyps: torch.Tensor,
    gts: torch.Tensor,
    fg_prob: torch.Tensor,
    num_classes: int,
    modes: bool,
) -> None:
    """Append one image's multi-hypothesis metrics to ``out`` (hyps (S, H, W), gts (R, H, W))."""
    freq, valid = rater_frequency(gts, num_classes)
    values = {
        "ged": generalized_energy_distance(hyps, gts, num_classes),
        "hm_iou": hungarian_matched_iou(hyps, gts, num_classes),
        "diversity": diversity(hyps, num_classes),
        "rater_pairwise_iou": rater_pairwise_iou(gts, num_classes),
        "ncc": uncertainty_ncc(hyps, gts, num_classes),
        "soft_dice": soft_dice(fg_prob, freq, valid),
    }
    if modes:
        values["mode_purity"] = mode_purity(hyps, gts, num_classes)
        values["mode_coverage"] = mode_coverage(hyps, gts, num_classes)
    for k, v in values.items():
        out.setdefault(k, []).append(v)


def _extra_hypotheses(model: nn.Module, ctx: Any, n: int, chunk: int = 25) -> torch.Tensor | None:
    """``n`` more hypotheses as labels (B, n, H, W), drawn ``chunk`` at a time; None if n = 0."""
    if n <= 0:
        return None
    parts = []
    for start in range(0, n, chunk):
        parts.append(model.decode_samples(ctx, min(chunk, n - start)).argmax(dim=2))
    return torch.cat(parts, dim=1)


def _dataset_attr(dataset: Any, name: str, default: Any) -> Any:
    """An attribute of the dataset, looked up through ``Subset`` (which does not forward it)."""
    while dataset is not None:
        value = None if isinstance(dataset, Subset) else getattr(dataset, name, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return default


def format_table(metrics: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A plain-text table of metrics (per-class IoU on its own lines)."""
    lines = []
    width = max(
        [len(k) for k in metrics if k != "per_class_iou"]
        + [len(f"iou/{c}") for c in class_names or []]
        + [10]
    )
    for k, v in metrics.items():
        if k == "per_class_iou":
            continue
        lines.append(f"{k:<{width}}  {_fmt(v)}")
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
    "hm_iou": "Hungarian-matched IoU, hypotheses vs raters",
    "diversity": "mean pairwise IoU between hypotheses (lower = more diverse)",
    "rater_pairwise_iou": "mean pairwise IoU between raters (images with >= 2)",
    "ncc": "S_NCC: model uncertainty vs per-rater error maps (PHiSeg / SSN)",
    "soft_dice": "QUBIQ score: Dice at thresholds 0.1..0.9 vs rater frequency",
    "ece": "calibration error of the foreground probability vs rater frequency",
    "mode_purity": "hypotheses within IoU 0.9 of a plausible mask",
    "mode_coverage": "images with every plausible mask hit at IoU 0.9",
}


def format_markdown(metrics: dict[str, Any], class_names: list[str] | None = None) -> str:
    """A markdown table of metrics: ``| metric | value | meaning |``, per-class IoU last.

    Args:
        metrics: :attr:`EvalResult.metrics`.
        class_names: Names for ``per_class_iou``.
    """
    lines = ["| metric | value | meaning |", "|---|---:|---|"]
    for k, v in metrics.items():
        if k == "per_class_iou":
            continue
        meaning = METRIC_DESCRIPTIONS.get(k, "")
        if not meaning and k.startswith("ged_"):
            meaning = f"squared GED with {k[4:]} hypotheses"
        lines.append(f"| {k} | {_fmt(v)} | {meaning} |")
    per_class = metrics.get("per_class_iou")
    if per_class is not None:
        names = class_names or [f"class_{i}" for i in range(len(per_class))]
        for name, v in zip(names, per_class, strict=False):
            lines.append(f"| iou/{name} | {_fmt(v)} | IoU of this class vs the reference mask |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
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
