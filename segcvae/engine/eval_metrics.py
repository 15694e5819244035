"""What the evaluation loop gathers batch by batch and the metrics it makes of it.

:class:`EvalBatch` is one batch on the model's device, :class:`Accumulator` collects the
predictions, likelihoods and hypotheses of :func:`segcvae.engine.eval_loop.evaluate` and turns
them into the reported metrics (per image and pooled), :class:`VisBatch` the few images of the
validation sample grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from segcvae.data.raters import majority_vote
from segcvae.inference import uncertainty
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
    mode_frequency_error,
    mode_purity,
    plausible_masks,
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
class EvalBatch:
    """One evaluation batch on the model's device, cut to the images still wanted.

    Attributes:
        x: (B, 3, H, W) images.
        y: (B, H, W) reference masks.
        masks: (B, R, H, W) every rater's mask, padded to the batch's largest R.
        num_masks: (B,) real raters per image.
        ids: The images' ids.
        probs: (B, R) the masks' probabilities (``mask_probs``, 0 on padding), or None where the
            data does not give them (equally likely masks).
    """

    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor
    num_masks: torch.Tensor
    ids: list[str]
    probs: torch.Tensor | None = None

    @classmethod
    def from_batch(
        cls, batch: dict[str, Any], device: torch.device, keep: int | None, first: int = 0
    ) -> EvalBatch:
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
        probs = batch.get("mask_probs")
        if probs is not None:
            probs = probs.to(device)  # (B, R)
        if keep is not None and x.shape[0] > keep:
            x, y, masks, num_masks = x[:keep], y[:keep], masks[:keep], num_masks[:keep]
            ids = ids[:keep]
            probs = None if probs is None else probs[:keep]
        return cls(x, y, masks, num_masks, ids, probs)

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

    def plausible(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image ``i``'s masks and their probabilities: without ``probs`` its real raters and
        None; with them :func:`~segcvae.metrics.plausible_masks` (identical masks merged,
        probability 0 dropped) and their (N,) probabilities."""
        n = int(self.num_masks[i])
        if self.probs is None:
            return self.masks[i, :n], None
        return plausible_masks(self.masks[i, :n], self.probs[i, :n])


class Accumulator:
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

    def add_predictions(self, pred: torch.Tensor, b: EvalBatch) -> None:
        """Count the deterministic prediction (B, H, W) against the reference, raters, majority."""
        real = b.real
        self.meter.update(pred, b.y)
        if b.probs is not None:  # masks of probability 0 are not plausible answers
            real = real & (b.probs > 0)
        self.rater_meter.update(pred.unsqueeze(1).expand_as(b.masks)[real], b.masks[real])
        plausible = [b.plausible(i) for i in range(b.size)]  # the majority is the weighted one
        majority = [majority_vote(g, self.num_classes, self.ignore_index, p) for g, p in plausible]
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
        b: EvalBatch,
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
        k = self.num_classes
        rows = self.rows[-b.size :]
        for i in range(b.size):
            gts, mask_probs = b.plausible(i)  # mask_probs None: equally likely raters
            freq, valid = rater_frequency(gts, k, mask_probs)
            values = image_metrics(
                hyps[i],
                gts,
                fg_prob[i],
                k,
                masks_are_modes,
                self.ignore_index,
                (freq, valid),
                probs=mask_probs,
            )
            self.ece_bins += calibration_bins(fg_prob[i], freq, valid).cpu()
            if extra is not None:
                values[f"ged_{extra.shape[1]}"] = generalized_energy_distance(
                    extra[i], gts, k, mask_probs
                )
            for key, value in values.items():
                self.per_image.setdefault(key, []).append(value)
            rows[i].update(values)

    def add_vis(
        self,
        k: int,
        b: EvalBatch,
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
    "mode_freq_error",
]


# Why a per-image metric can be undefined on every image (reported with it as "n/a").
UNDEFINED_REASONS = {
    "ncc": "undefined: the hypotheses never differ, so the uncertainty map is flat (a "
    "deterministic model), or they equal every rater",
    "rater_pairwise_iou": "undefined: every image has one rater (it needs >= 2)",
}


def image_metrics(
    hyps: torch.Tensor,
    gts: torch.Tensor,
    fg_prob: torch.Tensor,
    num_classes: int,
    modes: bool,
    ignore_index: int = 255,
    frequency: tuple[torch.Tensor, torch.Tensor] | None = None,
    probs: torch.Tensor | None = None,
) -> dict[str, float]:
    """One image's multi-hypothesis metrics (hyps (S, H, W), gts (R, H, W)).

    With >= 2 raters also the data's own references (the majority vote's GED and soft Dice, ties
    to the foreground) and the empty-hypothesis share error. ``frequency``: the raters'
    ``rater_frequency(gts, num_classes, probs)`` when the caller has it already.

    ``probs`` (R,): the masks' probabilities (``mask_probs``; pass the masks through
    :func:`~segcvae.metrics.plausible_masks` first, so that identical masks are one and none has
    probability 0). GED, the matched IoU, NCC, the frequency (soft Dice, ECE), the majority and
    the empty share weight the masks by them; ``rater_pairwise_iou`` is the plain mean over the
    distinct plausible masks; ``mode_freq_error`` is reported. None = equally likely masks, the
    metrics as without probabilities.
    """
    if frequency is not None:
        freq, valid = frequency
    else:
        freq, valid = rater_frequency(gts, num_classes, probs)
    values = {
        "ged": generalized_energy_distance(hyps, gts, num_classes, probs),
        "hm_iou": hungarian_matched_iou(hyps, gts, num_classes, probs),
        "diversity": diversity(hyps, num_classes),
        "rater_pairwise_iou": rater_pairwise_iou(gts, num_classes),
        "ncc": uncertainty_ncc(hyps, gts, num_classes, probs=probs),
        "soft_dice": soft_dice(fg_prob, freq, valid),
    }
    if gts.shape[0] >= 2:  # the data's own references, and the share of empty masks
        majority = majority_vote(gts, num_classes, ignore_index, probs)
        values["majority_ged"] = majority_ged(majority, gts, num_classes, probs)
        values["majority_soft_dice"] = majority_soft_dice(majority, gts, num_classes, probs)
        values["empty_share_error"] = empty_share_error(hyps, gts, num_classes, probs)
    if modes:
        values["mode_purity"] = mode_purity(hyps, gts, num_classes, probs=probs)
        values["mode_coverage"] = mode_coverage(hyps, gts, num_classes, probs=probs)
    if probs is not None:
        values["mode_freq_error"] = mode_frequency_error(hyps, gts, num_classes, probs)
    return values
