"""Combining several rater masks of one image into one reference mask."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def majority_vote(
    masks: Tensor, num_classes: int, ignore_index: int = 255, probs: Tensor | None = None
) -> Tensor:
    """The per-pixel majority of the rater masks.

    Each rater's label votes for its class; ``ignore_index`` (and any value outside [0, K)) does
    not vote. **Ties go to the foreground:** background loses every tie, and among tied
    foreground classes the lowest index wins (with two classes and an even number of raters, a
    pixel marked by half of them is foreground). A pixel no rater labels is ``ignore_index``.

    Args:
        masks: Rater labels (R, H, W), any integer dtype.
        num_classes: K (class 0 is background).
        ignore_index: Label that does not vote, and the output where nobody voted.
        probs: (R,) the masks' probabilities, their votes' weights (the per-pixel likeliest
            class; a mask of probability 0 does not vote; totals within 1e-9 are a tie).
            None = one vote each.

    Returns:
        (H, W) int64 labels. For R = 1 the mask itself.
    """
    masks = masks.long()
    valid = (masks >= 0) & (masks < num_classes)
    one_hot = torch.nn.functional.one_hot(masks.clamp(0, num_classes - 1), num_classes)
    if probs is not None:
        p = probs.double().to(masks.device)
        p = p / p.sum()
        valid = valid & (p > 0).view(-1, 1, 1)
        counts = (one_hot * valid.unsqueeze(-1) * p.view(-1, 1, 1, 1)).sum(0)  # (H, W, K)
        counts = (counts * 1e9).round()  # equal up to rounding of the probabilities: a tie
    else:
        counts = (one_hot * valid.unsqueeze(-1)).sum(0).float()  # (H, W, K)
    counts[..., 0] -= 0.5  # background loses ties
    vote = counts.argmax(-1)  # first maximum: the lowest tied foreground class
    return torch.where(valid.any(0), vote, torch.full_like(vote, ignore_index))


def majority_vote_np(masks: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """:func:`majority_vote` on a (R, H, W) numpy array; returns (H, W) uint8."""
    vote = majority_vote(torch.from_numpy(np.asarray(masks, np.int64)), num_classes, ignore_index)
    return vote.numpy().astype(np.uint8)


__all__ = ["majority_vote", "majority_vote_np"]
