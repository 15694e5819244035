"""The evaluation loop: segmentation metrics, conditional log-likelihood, multi-rater metrics.

Used by the trainer on the validation split (cheap settings) and by ``tools/evaluate.py`` (the
paper's settings). The model is evaluated in ``eval`` mode under a forked, seeded RNG, so the same
model gives the same numbers and evaluating does not disturb the training RNG.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from segcvae.config import EvalConfig
from segcvae.data.raters import majority_vote
from segcvae.inference import decode_samples_chunked, uncertainty
from segcvae.metrics import (
    SegmentationMeter,
    calibration_bins,
    diversity,
    ece_from_bins,
    empty_share_error,
    generalized_energy_distance,
    hungarian_matched_iou,
    majority_ged,
    majority_soft_dice,
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
    """Metrics (plain floats / lists), each image's own values, and when asked for a
    :class:`VisBatch`.

    Attributes:
        metrics: The metrics over the images (see :func:`evaluate`).
        per_image: One dict per image, in order: its ``id`` and its per-image metrics (``nll``,
            ``nll_mc``, ``ged``, ``hm_iou``, ... as computed; NaN where undefined), the values
            that ``metrics`` averages (and that cross-validation pools over folds).
        vis: The images kept for a sample grid.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    per_image: list[dict[str, Any]] = field(default_factory=list)
    vis: VisBatch | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel`` (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def eval_settings(ev: EvalConfig, **changes: Any) -> EvalConfig:
    """``cfg.eval`` with the given settings changed, those that are None left as they are: the one
    mapping from a config (and command-line flags) to :func:`evaluate`'s settings.

    Example:
        ``eval_settings(cfg.eval, samples=args.samples, max_images=0)``
    """
    return dataclasses.replace(ev, **{k: v for k, v in changes.items() if v is not None})


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    settings: EvalConfig | None = None,
    *,
    ignore_index: int = 255,
    seed: int = 0,
    progress: bool = False,
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
        settings: ``cfg.eval`` (or :func:`eval_settings` of it); None = the defaults of
            :class:`~segcvae.config.EvalConfig`. Read: ``samples`` (S for the likelihood
            estimates; 0 skips ``nll`` / ``nll_mc``), ``hypotheses`` (per image, for the
            multi-hypothesis metrics and the sample grid; 0 skips them), ``max_images`` (stop
            after this many images; 0 = all), ``num_vis`` (images kept for a sample grid),
            ``extra_ged_hypotheses`` (n > 0 also reports ``ged_<n>`` from n more hypotheses,
            decoded ``sample_chunk`` at a time). The loader's settings (``batch_size``,
            ``omission``, ``split``) are the caller's.
        ignore_index: Label value left out of every metric (``data.ignore_index``).
        seed: Seed of the evaluation RNG (``train.seed``).
        progress: Show a progress bar.
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
        probabilities); for images with >= 2 raters ``rater_pairwise_iou``, the data's own
        references ``majority_ged`` and ``majority_soft_dice`` (the raters' majority mask, ties to
        the foreground, scored as one deterministic hypothesis with the model's definitions) and
        ``empty_share_error`` (mean over images of |share of empty hypotheses - share of empty
        raters|); ``mode_purity`` / ``mode_coverage`` for mode data; ``images``. A per-image
        metric undefined for every image (``ncc`` of a deterministic model, whose uncertainty map
        is flat; ``rater_pairwise_iou`` of one-rater data) is None (JSON null, "n/a" in the
        tables) and its reason is in ``metrics["undefined"]`` (``{name: reason}``).
    """
    ev = settings if settings is not None else EvalConfig()
    samples, hypotheses, max_images = ev.samples, ev.hypotheses, ev.max_images
    num_vis, extra_ged_hypotheses, sample_chunk = (
        ev.num_vis,
        ev.extra_ged_hypotheses,
        ev.sample_chunk,
    )
    model = unwrap(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if masks_are_modes is None:
        masks_are_modes = bool(_dataset_attr(loader.dataset, "masks_are_modes", False))
    acc = _Accumulator(num_classes, ignore_index)
    fork_devices = [device] if device.type == "cuda" else []
    total = len(loader.dataset) if max_images <= 0 else min(max_images, len(loader.dataset))  # type: ignore[arg-type]
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            for batch in loader:
                keep = max_images - acc.seen if max_images > 0 else None
                b = _EvalBatch.from_batch(batch, device, keep, first=acc.seen)
                ctx = model.encode(b.x)  # image features once, shared by every estimate below
                pred = model.decode_mean(ctx).argmax(dim=1)  # (B, H, W)
                acc.add_predictions(pred, b)
                if samples > 0:
                    acc.add_likelihoods(*_batch_nll(model, b, ctx, samples))
                if hypotheses > 0:
                    probs = model.decode_samples(ctx, hypotheses).softmax(dim=2)  # (B, S, K, H, W)
                    hyps = probs.argmax(dim=2)  # (B, S, H, W)
                    extra = _extra_hypotheses(model, ctx, extra_ged_hypotheses, sample_chunk)
                    acc.add_hypotheses(probs, hyps, b, masks_are_modes, extra)
                    if acc.n_vis < num_vis:
                        acc.add_vis(min(num_vis - acc.n_vis, b.size), b, pred, probs, hyps)
                acc.seen += b.size
                bar.update(b.size)
                if max_images > 0 and acc.seen >= max_images:
                    break
    finally:
        bar.close()
        model.train(was_training)
    return EvalResult(metrics=acc.metrics(), per_image=acc.rows, vis=acc.vis())


@dataclass
class _EvalBatch:
    """One evaluation batch on the model's device, cut to the images still wanted.

    Attributes:
        x: (B, 3, H, W) images.
        y: (B, H, W) reference masks.
        masks: (B, R, H, W) every rater's mask, padded to the batch's largest R.
        num_masks: (B,) real raters per image.
        ids: The images' ids.
    """

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor
    num_masks: torch.Tensor
    ids: list[str]

    @classmethod
    def from_batch(
        cls, batch: dict[str, Any], device: torch.device, keep: int | None, first: int = 0
    ) -> _EvalBatch:
        """Move ``batch`` to ``device``; keep only its first ``keep`` images (None = all). Images
        without an ``id`` are named by their position, counting from ``first``."""
        x = batch["image"].to(device)
        y = batch["mask"].to(device)
        masks = batch.get("masks")
        masks = y.unsqueeze(1) if masks is None else masks.to(device)  # (B, R, H, W)
        num_masks = batch.get("num_masks")
        if num_masks is None:
            num_masks = torch.full((x.shape[0],), masks.shape[1], dtype=torch.long)
        num_masks = num_masks.to(device)
        ids = [str(i) for i in batch.get("id", range(first, first + x.shape[0]))]
        if keep is not None and x.shape[0] > keep:
            x, y, masks, num_masks = x[:keep], y[:keep], masks[:keep], num_masks[:keep]
            ids = ids[:keep]
        return cls(x, y, masks, num_masks, ids)

    @property
    def size(self) -> int:
        return self.x.shape[0]

    @property
    def real(self) -> torch.Tensor:
        """(B, R) bool: which rater slots hold a real mask."""
        return torch.arange(self.masks.shape[1], device=self.x.device) < self.num_masks.unsqueeze(1)

    def raters(self) -> list[torch.Tensor]:
        """Each image's real rater masks, R_b x (H, W)."""
        return [self.masks[b, : int(self.num_masks[b])] for b in range(self.size)]


def _batch_nll(
    model: nn.Module, b: _EvalBatch, ctx: Any, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-log p(y | x) of each image, the mean over its real raters: (best estimator, Monte Carlo).

    Returns:
        Two (B,) tensors on the CPU.
    """
    real = b.real
    totals = [torch.zeros(b.size, device=b.x.device) for _ in range(2)]
    for r in range(b.masks.shape[1]):  # padded raters are all ignore_index: nll 0
        nll = negative_log_likelihoods(model, b.x, b.masks[:, r], samples, ctx=ctx)
        for acc, v in zip(totals, (nll["nll"], nll["nll_mc"]), strict=True):
            acc += v.float() * real[:, r]
    return (totals[0] / b.num_masks).cpu(), (totals[1] / b.num_masks).cpu()


class _Accumulator:
    """What :func:`evaluate` gathers batch by batch, and the metrics it makes of it."""

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.meter = SegmentationMeter(num_classes, ignore_index)  # vs the reference mask
        self.rater_meter = SegmentationMeter(num_classes, ignore_index)  # vs every rater
        self.majority_meter = SegmentationMeter(num_classes, ignore_index)  # vs the majority vote
        self.nll_is: list[torch.Tensor] = []
        self.nll_mc: list[torch.Tensor] = []
        self.per_image: dict[str, list[float]] = {}  # metric -> its value on each image
        self.rows: list[dict[str, Any]] = []  # image -> its id and its values
        self.ece_bins = torch.zeros(3, 10, dtype=torch.float64)
        self.vis_parts: dict[str, list[torch.Tensor]] = {
            k: [] for k in VisBatch.__dataclass_fields__
        }
        self.n_vis = 0
        self.seen = 0

    def add_predictions(self, pred: torch.Tensor, b: _EvalBatch) -> None:
        """Count the deterministic prediction (B, H, W) against the reference, raters, majority."""
        real = b.real
        self.meter.update(pred, b.y)
        self.rater_meter.update(pred.unsqueeze(1).expand_as(b.masks)[real], b.masks[real])
        majority = [majority_vote(g, self.num_classes, self.ignore_index) for g in b.raters()]
        self.majority_meter.update(pred, torch.stack(majority))
        self.rows += [{"id": i} for i in b.ids]

    def add_likelihoods(self, nll: torch.Tensor, nll_mc: torch.Tensor) -> None:
        """Keep the per-image NLLs (B,) of :func:`_batch_nll` (after :meth:`add_predictions`)."""
        self.nll_is.append(nll)
        self.nll_mc.append(nll_mc)
        for row, a, c in zip(self.rows[-len(nll) :], nll.tolist(), nll_mc.tolist(), strict=True):
            row.update(nll=a, nll_mc=c)

    def add_hypotheses(
        self,
        probs: torch.Tensor,
        hyps: torch.Tensor,
        b: _EvalBatch,
        masks_are_modes: bool,
        extra: torch.Tensor | None,
    ) -> None:
        """Per-image multi-hypothesis metrics and calibration counts.

        Args:
            probs: (B, S, K, H, W) sampled class probabilities.
            hyps: (B, S, H, W) their label maps.
            b: The batch (its raters).
            masks_are_modes: Also score mode purity / coverage.
            extra: (B, n, H, W) more hypotheses for ``ged_<n>``, or None.
        """
        fg_prob = 1.0 - probs[:, :, 0].mean(dim=1)  # (B, H, W)
        gts = b.raters()
        k = self.num_classes
        rows = self.rows[-b.size :]
        for i in range(b.size):
            values = _image_metrics(
                hyps[i], gts[i], fg_prob[i], k, masks_are_modes, self.ignore_index
            )
            freq, valid = rater_frequency(gts[i], k)
            self.ece_bins += calibration_bins(fg_prob[i], freq, valid).cpu()
            if extra is not None:
                values[f"ged_{extra.shape[1]}"] = generalized_energy_distance(extra[i], gts[i], k)
            for key, value in values.items():
                self.per_image.setdefault(key, []).append(value)
            rows[i].update(values)

    def add_vis(
        self,
        k: int,
        b: _EvalBatch,
        pred: torch.Tensor,
        probs: torch.Tensor,
        hyps: torch.Tensor,
    ) -> None:
        """Keep the batch's first ``k`` images for the sample grid (on the CPU)."""
        ent = uncertainty(probs[:k])["entropy"]
        for name, t in (
            ("images", b.x[:k]),
            ("targets", b.y[:k]),
            ("predictions", pred[:k]),
            ("hypotheses", hyps[:k]),
            ("entropy", ent),
        ):
            self.vis_parts[name].append(
                t.float().cpu() if name in ("images", "entropy") else t.cpu()
            )
        self.n_vis += k

    def metrics(self) -> dict[str, Any]:
        """The metrics of :func:`evaluate` (plain floats / lists).

        A per-image metric that was computed but is undefined on every image (``ncc`` of a
        deterministic model, ``rater_pairwise_iou`` of one-rater data) is None (JSON null, "n/a"
        in :func:`format_markdown` / :func:`format_table`), and ``metrics["undefined"]`` maps its
        name to the reason (:data:`UNDEFINED_REASONS`); one that was not computed is absent.
        """
        metrics: dict[str, Any] = dict(self.meter.compute())
        metrics["images"] = self.seen
        for suffix, m in (("raters", self.rater_meter), ("majority", self.majority_meter)):
            counts = m.compute()
            metrics[f"pixel_accuracy_{suffix}"] = counts["pixel_accuracy"]
            metrics[f"mean_iou_{suffix}"] = counts["mean_iou"]
        if self.nll_is:
            metrics["nll"] = float(torch.cat(self.nll_is).mean())
            metrics["nll_mc"] = float(torch.cat(self.nll_mc).mean())
        per_image = self.per_image
        undefined: dict[str, str] = {}
        for key in METRIC_ORDER + sorted(k for k in per_image if k.startswith("ged_")):
            computed = per_image.get(key, [])
            values = [v for v in computed if not math.isnan(v)]
            if values:
                metrics[key] = float(np.mean(values))
            elif computed:  # computed, but undefined on every image: say so, do not drop it
                metrics[key] = None
                undefined[key] = UNDEFINED_REASONS.get(key, "undefined on every image")
        if per_image:
            metrics["ece"] = ece_from_bins(self.ece_bins)
        if undefined:
            metrics["undefined"] = undefined
        return metrics

    def vis(self) -> VisBatch | None:
        """The kept images as a :class:`VisBatch`, or None when none were kept."""
        if self.n_vis == 0:
            return None
        return VisBatch(**{k: torch.cat(v) for k, v in self.vis_parts.items()})


# Per-image metrics, averaged over the images where they are defined (NaN values are left out).
METRIC_ORDER = [
    "ged",
    "majority_ged",
    "hm_iou",
    "diversity",
    "rater_pairwise_iou",
    "ncc",
    "soft_dice",
    "majority_soft_dice",
    "empty_share_error",
    "mode_purity",
    "mode_coverage",
]


# Why a per-image metric can be undefined on every image (reported with it as "n/a").
UNDEFINED_REASONS = {
    "ncc": "undefined: the hypotheses never differ, so the uncertainty map is flat (a "
    "deterministic model), or they equal every rater",
    "rater_pairwise_iou": "undefined: every image has one rater (it needs >= 2)",
}


def _image_metrics(
    hyps: torch.Tensor,
    gts: torch.Tensor,
    fg_prob: torch.Tensor,
    num_classes: int,
    modes: bool,
    ignore_index: int = 255,
) -> dict[str, float]:
    """One image's multi-hypothesis metrics (hyps (S, H, W), gts (R, H, W)).

    With >= 2 raters also the data's own references (the majority vote's GED and soft Dice, ties
    to the foreground) and the empty-hypothesis share error.
    """
    freq, valid = rater_frequency(gts, num_classes)
    values = {
        "ged": generalized_energy_distance(hyps, gts, num_classes),
        "hm_iou": hungarian_matched_iou(hyps, gts, num_classes),
        "diversity": diversity(hyps, num_classes),
        "rater_pairwise_iou": rater_pairwise_iou(gts, num_classes),
        "ncc": uncertainty_ncc(hyps, gts, num_classes),
        "soft_dice": soft_dice(fg_prob, freq, valid),
    }
    if gts.shape[0] >= 2:  # the data's own references, and the share of empty masks
        majority = majority_vote(gts, num_classes, ignore_index)
        values["majority_ged"] = majority_ged(majority, gts, num_classes)
        values["majority_soft_dice"] = majority_soft_dice(majority, gts, num_classes)
        values["empty_share_error"] = empty_share_error(hyps, gts, num_classes)
    if modes:
        values["mode_purity"] = mode_purity(hyps, gts, num_classes)
        values["mode_coverage"] = mode_coverage(hyps, gts, num_classes)
    return values


def _extra_hypotheses(model: nn.Module, ctx: Any, n: int, chunk: int) -> torch.Tensor | None:
    """``n`` more hypotheses as labels (B, n, H, W), drawn ``chunk`` at a time; None if n = 0."""
    if n <= 0:
        return None
    return decode_samples_chunked(model, ctx, n, chunk, labels=True).long()


def _dataset_attr(dataset: Any, name: str, default: Any) -> Any:
    """An attribute of the dataset, looked up through ``Subset`` (which does not forward it)."""
    while dataset is not None:
        value = None if isinstance(dataset, Subset) else getattr(dataset, name, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return default
