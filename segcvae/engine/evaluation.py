"""The evaluation loop: segmentation metrics, conditional log-likelihood and multi-hypothesis metrics.

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
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from segcvae.inference import uncertainty
from segcvae.metrics import (
    SegmentationMeter,
    generalized_energy_distance,
    hungarian_matched_iou,
    negative_log_likelihoods,
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
) -> EvalResult:
    """Evaluate a model on a loader of ``{"image", "mask"[, "masks"]}`` batches.

    Args:
        model: A segcvae model (DDP is unwrapped).
        loader: Evaluation batches; ``image`` (B, 3, H, W), ``mask`` (B, H, W), optionally
            ``masks`` (B, M, H, W) with every plausible mask.
        num_classes: K.
        ignore_index: Label value left out of every metric.
        samples: S for the likelihood estimates; 0 skips ``nll`` / ``nll_mc``.
        hypotheses: Sampled hypotheses per image for GED / Hungarian-matched IoU (when the data
            has ``masks``) and for the sample grid; 0 skips them.
        max_images: Stop after this many images (0 = all).
        num_vis: Keep this many images for a sample grid.
        seed: Seed of the evaluation RNG.
        progress: Show a progress bar.

    Returns:
        :class:`EvalResult` with ``pixel_accuracy``, ``mean_iou``, ``per_class_iou``, ``nll``
        (importance sampling when the model has a recognition net, exact for the CNN, Monte Carlo
        otherwise), ``nll_mc``, ``images``, and ``ged`` / ``hm_iou`` for multi-mask data. The NLLs
        are nats per image.
    """
    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    meter = SegmentationMeter(num_classes, ignore_index)
    nll_is: list[torch.Tensor] = []
    nll_mc: list[torch.Tensor] = []
    ged: list[float] = []
    hm_iou: list[float] = []
    vis_parts: dict[str, list[torch.Tensor]] = {k: [] for k in VisBatch.__dataclass_fields__}
    n_vis = 0
    seen = 0
    fork_devices = [device] if device.type == "cuda" else []
    total = len(loader.dataset) if max_images <= 0 else min(max_images, len(loader.dataset))  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for batch in loader:
                x = batch["image"].to(device)
                y = batch["mask"].to(device)
                masks = batch.get("masks")
                if max_images > 0 and seen + x.shape[0] > max_images:
                    keep = max_images - seen
                    x, y = x[:keep], y[:keep]
                    masks = masks[:keep] if masks is not None else None
                ctx = model.encode(x)  # image features once, shared by every estimate below
                pred = model.decode_mean(ctx).argmax(dim=1)  # (B, H, W)
                meter.update(pred, y)
                if samples > 0:  # the model's best estimate (IS / exact / MC) and Monte Carlo
                    nll = negative_log_likelihoods(model, x, y, samples, ctx=ctx)
                    nll_is.append(nll["nll"].cpu())
                    nll_mc.append(nll["nll_mc"].cpu())
                want_vis = n_vis < num_vis
                if hypotheses > 0 and (masks is not None or want_vis):
                    probs = model.decode_samples(ctx, hypotheses).softmax(dim=2)  # (B, S, K, H, W)
                    hyps = probs.argmax(dim=2)  # (B, S, H, W)
                    if masks is not None:
                        for b in range(x.shape[0]):
                            gts = masks[b].to(device)
                            ged.append(generalized_energy_distance(hyps[b], gts, num_classes))
                            hm_iou.append(hungarian_matched_iou(hyps[b], gts, num_classes))
                    if want_vis:
                        k = min(num_vis - n_vis, x.shape[0])
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
                seen += x.shape[0]
                bar.update(x.shape[0])
                if max_images > 0 and seen >= max_images:
                    break
    finally:
        bar.close()
        model.train(was_training)
    metrics: dict[str, Any] = dict(meter.compute())
    metrics["images"] = seen
    if nll_is:
        metrics["nll"] = float(torch.cat(nll_is).mean())
        metrics["nll_mc"] = float(torch.cat(nll_mc).mean())
    if ged:
        metrics["ged"] = float(np.mean(ged))
        metrics["hm_iou"] = float(np.mean(hm_iou))
    vis = None
    if n_vis > 0:
        vis = VisBatch(**{k: torch.cat(v) for k, v in vis_parts.items()})
    return EvalResult(metrics=metrics, vis=vis)


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
