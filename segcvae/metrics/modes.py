"""Metrics for data whose plausible masks come with known probabilities: the plausible set of an
item (identical masks merged, probability-0 masks dropped) and the mode-frequency error.

IoU is that of :func:`~segcvae.metrics.pairwise_iou` (the foreground-class mean, two masks without
foreground agree), as for mode purity and coverage.
"""

from __future__ import annotations

import torch
from torch import Tensor

from segcvae.metrics.multi_hypothesis import normalized_probs, pairwise_iou


def plausible_masks(masks: Tensor, probs: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """An item's distinct plausible masks and their probabilities.

    Identical masks (equal at every pixel) are merged and their probabilities summed; masks of
    probability 0 are dropped; the probabilities are normalised to sum to 1. Masks keep the order
    of their first occurrence.

    Args:
        masks: (M, H, W) labels.
        probs: (M,) their probabilities; None = equally likely.

    Returns:
        ``(modes, p)``: (N, H, W) distinct masks and (N,) float64 probabilities > 0, N <= M.

    Raises:
        ValueError: negative, non-finite or all-zero probabilities, or a length other than M.
    """
    m = masks.shape[0]
    if probs is None:
        probs = torch.ones(m, dtype=torch.float64, device=masks.device)
    if probs.shape != (m,):
        raise ValueError(f"{m} masks but mask probabilities of shape {tuple(probs.shape)}")
    p = normalized_probs(probs).to(masks.device)
    _, inverse = torch.unique(masks.flatten(1), dim=0, return_inverse=True)  # (M,) group ids
    groups = int(inverse.max()) + 1
    merged = p.new_zeros(groups).index_add_(0, inverse, p)
    order = torch.arange(m, device=masks.device)
    first = torch.full((groups,), m, device=masks.device).scatter_reduce(0, inverse, order, "amin")
    first, by_first = first.sort()  # groups in the order of their first mask
    merged = merged[by_first]
    keep = merged > 0
    return masks[first[keep]], merged[keep] / merged[keep].sum()


def mode_frequency_error(
    samples: Tensor,
    modes: Tensor,
    num_classes: int,
    probs: Tensor | None = None,
    threshold: float = 0.9,
) -> float:
    """Total-variation distance between how often the hypotheses draw each mode and how often
    they should.

    The modes are :func:`plausible_masks` (identical masks merged, probability 0 dropped). Each
    hypothesis is assigned to the mode it matches best if that IoU is >= ``threshold``, else to a
    "no mode" bin. With ``h`` the histogram of the S hypotheses over the N modes and the no-mode
    bin (frequencies) and ``q = (p_1, ..., p_N, 0)``, the error is ``0.5 * sum |h - q|``: 0 when
    every mode is drawn exactly as often as it is likely and no hypothesis is implausible; 1 when
    no hypothesis matches a mode.

    Example: modes A, B, C with p = 0.6, 0.3, 0.1 and 10 hypotheses, 5 A, 4 B, 1 matching nothing:
    h = (0.5, 0.4, 0, 0.1), error = 0.5 (0.1 + 0.1 + 0.1 + 0.1) = 0.2.

    Args:
        samples: Hypotheses (S, H, W).
        modes: The item's plausible masks (M, H, W).
        num_classes: K.
        probs: (M,) their probabilities; None = equally likely.
        threshold: IoU a hypothesis needs to count as a mode.

    Returns:
        In [0, 1].
    """
    modes, p = plausible_masks(modes, probs)
    n = modes.shape[0]
    best, which = pairwise_iou(samples, modes, num_classes).max(dim=1)  # (S,): first of ties
    bins = torch.where(best >= threshold, which, torch.full_like(which, n))
    h = torch.bincount(bins, minlength=n + 1).double() / samples.shape[0]
    q = torch.cat([p, p.new_zeros(1)])
    return float(0.5 * (h - q).abs().sum())


__all__ = ["mode_frequency_error", "plausible_masks"]
