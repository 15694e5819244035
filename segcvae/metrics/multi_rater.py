"""Metrics of a predictive distribution against several raters: NCC, soft Dice, ECE, the share
of empty hypotheses, and the data's own references (the majority vote's GED and soft Dice).

All are pure functions of one image's hypotheses / probabilities and its rater masks; the
evaluation loop averages them over images (ECE pools its bins over the dataset). "Foreground"
is every class but 0, so two-class data reads as usual and multi-class data as object vs
background.

Where the data gives its masks' probabilities (``mask_probs``), the functions that average over
raters take them as ``probs`` (R,) and weight the raters by them; None = equally likely raters,
computed as without ``probs``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from segcvae.metrics.multi_hypothesis import generalized_energy_distance, normalized_probs

SOFT_DICE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def ncc(a: Tensor, b: Tensor, valid: Tensor | None = None) -> float:
    """Zero-normalised cross-correlation of two maps: ``mean((a - mean a)(b - mean b)) / (sd a sd b)``.

    Args:
        a: A map, any shape.
        b: A map of the same shape.
        valid: Optional boolean map of the pixels to use.

    Returns:
        In [-1, 1]; 1 for identical (or positively affine) maps; NaN when either map is constant
        (the correlation is undefined there).
    """
    a, b = a.double().flatten(), b.double().flatten()
    if valid is not None:
        keep = valid.flatten()
        a, b = a[keep], b[keep]
    if a.numel() == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    sa, sb = a.pow(2).mean().sqrt(), b.pow(2).mean().sqrt()
    if sa <= 1e-12 or sb <= 1e-12:
        return float("nan")
    return float((a * b).mean() / (sa * sb))


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(N, H, W) labels -> (N, K, H, W) float; labels outside [0, K) give a zero vector."""
    valid = (labels >= 0) & (labels < num_classes)
    oh = F.one_hot(labels.long().clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return oh.double() * valid.unsqueeze(1)


def expected_cross_entropy_map(samples: Tensor, num_classes: int, eps: float = 1e-8) -> Tensor:
    """The model's uncertainty: ``E_s[CE(mean, s)]`` per pixel, as PHiSeg and SSN report it.

    ``CE(p, s) = -sum_k p_k log(s_k + eps)`` with ``s`` the one-hot hypothesis and ``p`` the
    hypotheses' mean (their per-pixel class frequencies).

    Args:
        samples: Hypotheses (S, H, W).
        num_classes: K.
        eps: Added inside the log of the one-hot hypotheses.

    Returns:
        (H, W), 0 where all hypotheses agree.
    """
    oh = _one_hot(samples, num_classes)  # (S, K, H, W)
    mean = oh.mean(0, keepdim=True)
    return -(mean * torch.log(oh + eps)).sum(1).mean(0)


def uncertainty_ncc(
    samples: Tensor,
    gts: Tensor,
    num_classes: int,
    eps: float = 1e-8,
    probs: Tensor | None = None,
) -> float:
    """S_NCC of PHiSeg (Baumgartner et al. 2019), the quantity the SSN code reports as NCC.

    ``mean_j NCC(E_s[CE(mean, s)], E_s[CE(y_j, s)])``: the correlation between the model's
    uncertainty map (:func:`expected_cross_entropy_map`) and, for each rater j, the map of the
    hypotheses' expected cross-entropy against that rater, averaged over the raters. Pixels some
    rater leaves unlabelled (``ignore_index``) are left out. Raters whose NCC is undefined (a
    constant map, e.g. every hypothesis equal to the rater) do not count; NaN if none counts.

    Args:
        samples: Hypotheses (S, H, W).
        gts: Rater masks (R, H, W).
        num_classes: K.
        eps: As in :func:`expected_cross_entropy_map`.
        probs: (R,) the raters' probabilities: a weighted mean over the raters whose NCC is
            defined (weights renormalised over them); None = the plain mean.
    """
    gamma = expected_cross_entropy_map(samples, num_classes, eps)  # (H, W)
    valid = ((gts >= 0) & (gts < num_classes)).all(0)
    log_s = torch.log(_one_hot(samples, num_classes) + eps)  # (S, K, H, W)
    weights = [1.0] * gts.shape[0] if probs is None else normalized_probs(probs).tolist()
    values, kept = [], []
    for y, w in zip(_one_hot(gts, num_classes), weights, strict=True):  # (K, H, W)
        e_sy = -(y.unsqueeze(0) * log_s).sum(1).mean(0)  # (H, W)
        v = ncc(gamma, e_sy, valid)
        if not math.isnan(v):
            values.append(v)
            kept.append(w)
    if probs is None:
        return sum(values) / len(values) if values else float("nan")
    total = sum(kept)
    return (
        sum(v * w for v, w in zip(values, kept, strict=True)) / total if total > 0 else float("nan")
    )


def rater_frequency(
    gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Fraction of raters marking each pixel as foreground, and where any rater labels it.

    Args:
        gts: Rater masks (R, H, W); values outside [0, K) (the ignore index) do not count.
        num_classes: K.
        probs: (R,) the raters' probabilities: the frequency is then the probability of
            foreground, ``sum_j p_j [y_j fg] / sum_j p_j [y_j labelled]``, and a pixel counts as
            labelled where a rater of probability > 0 labels it. None = equally likely.

    Returns:
        ``(frequency, valid)``, both (H, W): float64 in [0, 1] and bool.
    """
    labelled = (gts >= 0) & (gts < num_classes)
    if probs is not None:
        p = normalized_probs(probs).to(gts.device).view(-1, 1, 1)
        n_w = (labelled * p).sum(0)
        fg_w = ((gts > 0) & labelled).double().mul(p).sum(0)
        return fg_w / n_w.clamp_min(1e-12), n_w > 0
    n = labelled.sum(0)
    fg = ((gts > 0) & labelled).sum(0)
    return fg.double() / n.clamp_min(1), n > 0


def soft_dice(
    prob: Tensor,
    freq: Tensor,
    valid: Tensor | None = None,
    thresholds: tuple[float, ...] = SOFT_DICE_THRESHOLDS,
) -> float:
    """The QUBIQ score: Dice of ``prob > t`` and ``freq > t``, averaged over the thresholds.

    Args:
        prob: The model's foreground probability (H, W).
        freq: The raters' mean foreground mask (H, W), e.g. from :func:`rater_frequency`.
        valid: Optional boolean map of the pixels to use.
        thresholds: 0.1, 0.2, ..., 0.9 as in the challenge.

    Returns:
        In [0, 1]. At a threshold where both binarised maps are empty the Dice is 1.
    """
    prob, freq = prob.double(), freq.double()
    if valid is not None:
        prob, freq = prob[valid], freq[valid]
    scores = []
    for t in thresholds:
        p, g = prob > t, freq > t
        denom = int(p.sum() + g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return sum(scores) / len(scores)


def calibration_bins(
    prob: Tensor, freq: Tensor, valid: Tensor | None = None, n_bins: int = 10
) -> Tensor:
    """Per-bin counts for the ECE, to add up over images.

    Args:
        prob: Predicted foreground probability, any shape.
        freq: Observed foreground frequency (the raters' mean; 0/1 for one rater), same shape.
        valid: Optional boolean map of the pixels to use.
        n_bins: Equal-width bins over [0, 1]; a probability of exactly 1 falls in the last.

    Returns:
        (3, n_bins) float64: pixel count, sum of ``prob`` and sum of ``freq`` per bin.
    """
    prob, freq = prob.double().flatten(), freq.double().flatten()
    if valid is not None:
        keep = valid.flatten()
        prob, freq = prob[keep], freq[keep]
    idx = (prob * n_bins).long().clamp(0, n_bins - 1)
    out = prob.new_zeros(3, n_bins)
    out[0].index_add_(0, idx, torch.ones_like(prob))
    out[1].index_add_(0, idx, prob)
    out[2].index_add_(0, idx, freq)
    return out


def ece_from_bins(bins: Tensor) -> float:
    """``sum_b (n_b / N) |mean prob_b - mean freq_b|`` from :func:`calibration_bins` sums."""
    count, sum_p, sum_f = bins.double()
    total = float(count.sum())
    if total == 0:
        return float("nan")
    return float((sum_p - sum_f).abs().sum() / total)


def ece(prob: Tensor, freq: Tensor, valid: Tensor | None = None, n_bins: int = 10) -> float:
    """Expected calibration error of a foreground probability against the rater frequency.

    Pixels are binned by ``prob``; each bin contributes its share of the pixels times the gap
    between its mean predicted probability and its mean rater frequency.

    Args:
        prob: Predicted foreground probability, any shape.
        freq: The raters' foreground frequency, same shape.
        valid: Optional boolean map of the pixels to use.
        n_bins: Number of equal-width bins.
    """
    return ece_from_bins(calibration_bins(prob, freq, valid, n_bins))


def empty_masks(masks: Tensor, num_classes: int) -> Tensor:
    """Which masks have no foreground pixel (no label in 1..K-1; the ignore index is not one).

    Args:
        masks: Labels (N, H, W).
        num_classes: K.

    Returns:
        (N,) bool.
    """
    foreground = (masks > 0) & (masks < num_classes)
    return ~foreground.flatten(1).any(1)


def empty_share_error(
    samples: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> float:
    """``|share of empty hypotheses - share of empty raters|`` for one image.

    Where raters disagree about whether anything is there (a lesion some mark and others leave
    empty), GED puts a non-empty hypothesis at distance 1 from an empty rater, so a model should
    draw empty masks about as often as the raters do. The evaluation loop averages this over
    images (``empty_share_error``).

    Args:
        samples: Hypotheses (S, H, W).
        gts: Rater masks (R, H, W).
        num_classes: K.
        probs: (R,) the raters' probabilities: the raters' share is then the probability of an
            empty mask. None = equally likely.

    Returns:
        In [0, 1]; 0 when both shares are equal (e.g. 2 of 8 hypotheses and 1 of 4 raters empty).
    """
    hyp = empty_masks(samples, num_classes).double().mean()
    empty = empty_masks(gts, num_classes).double()
    if probs is None:
        raters = empty.mean()
    else:
        raters = (empty * normalized_probs(probs).to(empty.device)).sum()
    return float((hyp - raters).abs())


def majority_ged(
    majority: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> float:
    """The GED of the raters' majority mask taken as one deterministic hypothesis.

    A reference from the data alone: a model that always predicts the majority vote scores
    this. With one hypothesis ``m`` the hypotheses' own spread is 0, so
    ``D^2 = 2 E_j[d(m, y_j)] - E_{j,k}[d(y_j, y_k)]`` (pairs over all raters, j = k included, as
    :func:`~segcvae.metrics.generalized_energy_distance` estimates it; d = 1 - IoU).

    Args:
        majority: The raters' majority mask (H, W), e.g. ``segcvae.data.raters.majority_vote``.
        gts: Rater masks (R, H, W).
        num_classes: K.
        probs: (R,) the raters' probabilities (weighted GED); None = equally likely.
    """
    return generalized_energy_distance(majority.unsqueeze(0), gts, num_classes, probs)


def majority_soft_dice(
    majority: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> float:
    """The QUBIQ soft Dice of the raters' majority mask, as a 0/1 foreground probability.

    The same definition as the model's ``soft_dice`` (:func:`soft_dice` of the probability
    against :func:`rater_frequency`, pixels no rater labels left out): at every threshold below 1
    the binarised majority is the majority itself, so this is the mean over t = 0.1 .. 0.9 of the
    Dice between the majority and ``frequency > t``.

    Args:
        majority: The raters' majority mask (H, W) (the ignore index counts as background).
        gts: Rater masks (R, H, W).
        num_classes: K.
        probs: (R,) the raters' probabilities (the frequency is weighted by them); None = equally
            likely.
    """
    prob = ((majority > 0) & (majority < num_classes)).double()
    freq, valid = rater_frequency(gts, num_classes, probs)
    return soft_dice(prob, freq, valid)


__all__ = [
    "SOFT_DICE_THRESHOLDS",
    "calibration_bins",
    "ece",
    "ece_from_bins",
    "empty_masks",
    "empty_share_error",
    "expected_cross_entropy_map",
    "majority_ged",
    "majority_soft_dice",
    "ncc",
    "rater_frequency",
    "soft_dice",
    "uncertainty_ncc",
]
