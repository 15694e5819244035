"""Metrics for data with several plausible masks: GED and Hungarian-matched IoU.

Distances are ``d(a, b) = 1 - IoU(a, b)`` where IoU is averaged over the foreground classes
(1..K-1) that occur in ``a`` or ``b``. **Empty-vs-empty rule:** if no foreground class occurs in
either mask, the masks agree and ``d = 0`` (IoU = 1), as in Kohl et al. (2018).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def pairwise_iou(a: Tensor, b: Tensor, num_classes: int) -> Tensor:
    """Foreground-mean IoU between every mask of ``a`` and every mask of ``b``.

    Args:
        a: Labels (N, H, W).
        b: Labels (M, H, W).
        num_classes: K (class 0 is background).

    Returns:
        (N, M) IoU in [0, 1], with 1 for two masks without foreground.
    """
    fg = torch.arange(1, num_classes, device=a.device)
    oa = (a.flatten(1).unsqueeze(-1) == fg).float()  # (N, P, K-1)
    ob = (b.flatten(1).unsqueeze(-1) == fg).float()  # (M, P, K-1)
    inter = torch.einsum("npk,mpk->nmk", oa, ob)
    union = oa.sum(1).unsqueeze(1) + ob.sum(1).unsqueeze(0) - inter  # (N, M, K-1)
    present = union > 0
    iou = torch.where(present, inter / union.clamp_min(1), torch.zeros_like(inter))
    n_present = present.sum(-1)
    return torch.where(
        n_present > 0, iou.sum(-1) / n_present.clamp_min(1), torch.ones_like(iou[..., 0])
    )


def generalized_energy_distance(samples: Tensor, gts: Tensor, num_classes: int) -> float:
    """Squared generalized energy distance D^2 = 2 E[d(s, y)] - E[d(s, s')] - E[d(y, y')].

    Expectations run over all pairs (including s = s'), the estimator of Kohl et al. (2018).

    Args:
        samples: Predicted hypotheses (S, H, W).
        gts: The plausible ground-truth masks (M, H, W), taken as equally likely.
        num_classes: K.
    """
    d_sy = 1 - pairwise_iou(samples, gts, num_classes)
    d_ss = 1 - pairwise_iou(samples, samples, num_classes)
    d_yy = 1 - pairwise_iou(gts, gts, num_classes)
    return float(2 * d_sy.mean() - d_ss.mean() - d_yy.mean())


def hungarian_matched_iou(samples: Tensor, gts: Tensor, num_classes: int) -> float:
    """Mean IoU of the best one-to-one matching of hypotheses to ground truths.

    The ground-truth set is tiled to the number of hypotheses (Kohl et al. 2019), then matched
    with :func:`scipy.optimize.linear_sum_assignment`.

    Args:
        samples: Hypotheses (S, H, W).
        gts: Plausible masks (M, H, W).
        num_classes: K.
    """
    s = samples.shape[0]
    tiled = gts[torch.arange(s) % gts.shape[0]]
    iou = pairwise_iou(samples, tiled, num_classes).cpu().numpy()
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].mean())
