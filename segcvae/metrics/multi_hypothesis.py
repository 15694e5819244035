"""Metrics for data with several plausible masks: GED, Hungarian-matched IoU, pairwise IoU
(hypothesis diversity, inter-rater agreement) and mode purity / coverage.

Distances are ``d(a, b) = 1 - IoU(a, b)`` where IoU is averaged over the foreground classes
(1..K-1) that occur in ``a`` or ``b``. **Empty-vs-empty rule:** if no foreground class occurs in
either mask, the masks agree and ``d = 0`` (IoU = 1), as in Kohl et al. (2018).

**Mask probabilities.** Where the data knows how likely each mask is (``mask_probs`` of the item
contract), GED, the Hungarian-matched IoU and mode purity / coverage take them as ``probs``
(M,); None means equally likely masks, and the computation is then the one without ``probs``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, linprog
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


def normalized_probs(probs: Tensor) -> Tensor:
    """``probs`` as float64 summing to 1.

    Args:
        probs: (M,) non-negative mask probabilities (or weights), not all 0.

    Raises:
        ValueError: a negative or non-finite value, or all values 0.
    """
    p = probs.double()
    total = float(p.sum())
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()) or total <= 0:
        raise ValueError(f"mask probabilities must be finite, >= 0 and not all 0; got {p.tolist()}")
    return p / total


def generalized_energy_distance(
    samples: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> float:
    """Squared generalized energy distance D^2 = 2 E[d(s, y)] - E[d(s, s')] - E[d(y, y')].

    Expectations run over all pairs (including s = s'), the estimator of Kohl et al. (2018). With
    ``probs`` the masks are weighted by their probabilities in E[d(s, y)] = mean_s sum_j p_j
    d(s, y_j) and E[d(y, y')] = sum_jk p_j p_k d(y_j, y_k): the same value as without ``probs``
    with each mask repeated in proportion (p = 2/3, 1/3 scores as [y_1, y_1, y_2]).

    Args:
        samples: Predicted hypotheses (S, H, W).
        gts: The plausible ground-truth masks (M, H, W).
        num_classes: K.
        probs: (M,) the masks' probabilities (normalised here); None = equally likely.
    """
    d_sy = 1 - pairwise_iou(samples, gts, num_classes)
    d_ss = 1 - pairwise_iou(samples, samples, num_classes)
    d_yy = 1 - pairwise_iou(gts, gts, num_classes)
    if probs is None:
        return float(2 * d_sy.mean() - d_ss.mean() - d_yy.mean())
    p = normalized_probs(probs).to(d_sy.device)
    e_sy = (d_sy.double().mean(0) * p).sum()
    e_yy = p @ d_yy.double() @ p
    return float(2 * e_sy - d_ss.double().mean() - e_yy)


def hungarian_matched_iou(
    samples: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None
) -> float:
    """Mean IoU of the best one-to-one matching of hypotheses to ground truths.

    The ground-truth set is tiled to the number of hypotheses (Kohl et al. 2019), then matched
    with :func:`scipy.optimize.linear_sum_assignment`.

    **With probabilities** the matching becomes a transport: each hypothesis carries mass 1/S,
    mask j mass p_j, and the score is the largest ``sum_sj pi_sj IoU(s, y_j)`` over the plans pi
    with those marginals (an exact linear program). Where every ``S p_j`` is an integer this is
    the Hungarian matching with mask j repeated ``S p_j`` times (a transport problem with integer
    marginals has an integral optimum), i.e. the masks duplicated in proportion; otherwise it is
    that matching with fractional copies, without the rounding a tiling would need.

    Args:
        samples: Hypotheses (S, H, W).
        gts: Plausible masks (M, H, W).
        num_classes: K.
        probs: (M,) the masks' probabilities (normalised here); None = equally likely (tiling).
    """
    if probs is not None:
        iou = pairwise_iou(samples, gts, num_classes).double().cpu().numpy()
        return _transport_iou(iou, normalized_probs(probs).cpu().numpy())
    s = samples.shape[0]
    tiled = gts[torch.arange(s) % gts.shape[0]]
    iou = pairwise_iou(samples, tiled, num_classes).cpu().numpy()
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].mean())


def _transport_iou(iou: np.ndarray, probs: np.ndarray) -> float:
    """max sum pi * iou over plans pi (S, M) with row sums 1/S and column sums ``probs``."""
    s, m = iou.shape
    rows = np.kron(np.eye(s), np.ones((1, m)))  # sum_j pi_sj = 1/S
    cols = np.kron(np.ones((1, s)), np.eye(m))  # sum_s pi_sj = p_j
    res = linprog(
        -iou.ravel(),
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([np.full(s, 1.0 / s), probs]),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:  # pragma: no cover - a feasible, bounded LP; HiGHS solves it
        raise RuntimeError(f"matched IoU: the transport problem failed ({res.message})")
    return float(-res.fun)


def ged(samples: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None) -> float:
    """Squared GED with d = 1 - IoU; the same as :func:`generalized_energy_distance`."""
    return generalized_energy_distance(samples, gts, num_classes, probs)


def hm_iou(samples: Tensor, gts: Tensor, num_classes: int, probs: Tensor | None = None) -> float:
    """Hungarian-matched IoU; the same as :func:`hungarian_matched_iou`."""
    return hungarian_matched_iou(samples, gts, num_classes, probs)


def mean_pairwise_iou(masks: Tensor, num_classes: int) -> float:
    """Mean IoU over the N (N - 1) / 2 pairs of distinct masks (a mask with itself is left out).

    Args:
        masks: Labels (N, H, W).
        num_classes: K.

    Returns:
        The mean, 1 for identical masks; NaN when N < 2.
    """
    n = masks.shape[0]
    if n < 2:
        return float("nan")
    iou = pairwise_iou(masks, masks, num_classes).double()
    return float((iou.sum() - iou.diagonal().sum()) / (n * (n - 1)))


def diversity(samples: Tensor, num_classes: int) -> float:
    """Mean pairwise IoU between the hypotheses of one image: 1 = all alike, lower = more diverse.

    Args:
        samples: Hypotheses (S, H, W).
        num_classes: K.
    """
    return mean_pairwise_iou(samples, num_classes)


def rater_pairwise_iou(gts: Tensor, num_classes: int) -> float:
    """Mean pairwise IoU among the raters of one image (NaN with fewer than two raters).

    Args:
        gts: Rater masks (R, H, W).
        num_classes: K.
    """
    return mean_pairwise_iou(gts, num_classes)


def mode_purity(
    samples: Tensor,
    modes: Tensor,
    num_classes: int,
    threshold: float = 0.9,
    probs: Tensor | None = None,
) -> float:
    """Fraction of hypotheses within IoU >= ``threshold`` of at least one plausible mask.

    Args:
        samples: Hypotheses (S, H, W).
        modes: The complete set of plausible masks (M, H, W).
        num_classes: K.
        threshold: IoU a hypothesis needs to count as that mode.
        probs: (M,) the modes' probabilities; a mode of probability 0 is not plausible and does
            not count. None = every mask counts.
    """
    iou = pairwise_iou(samples, _possible(modes, probs), num_classes)  # (S, M)
    return float((iou.max(dim=1).values >= threshold).double().mean())


def mode_coverage(
    samples: Tensor,
    modes: Tensor,
    num_classes: int,
    threshold: float = 0.9,
    probs: Tensor | None = None,
) -> float:
    """1.0 if every plausible mask is matched by some hypothesis at IoU >= ``threshold``, else 0.0.

    Averaged over images this is the fraction of images whose modes are all covered.

    Args:
        samples: Hypotheses (S, H, W).
        modes: The complete set of plausible masks (M, H, W).
        num_classes: K.
        threshold: IoU a hypothesis needs to count as that mode.
        probs: (M,) the modes' probabilities; only the modes with probability > 0 must be
            covered. None = every mask.
    """
    iou = pairwise_iou(samples, _possible(modes, probs), num_classes)  # (S, M)
    return float(bool((iou.max(dim=0).values >= threshold).all()))


def _possible(modes: Tensor, probs: Tensor | None) -> Tensor:
    """The modes of probability > 0 (all of them without ``probs``)."""
    if probs is None:
        return modes
    return modes[normalized_probs(probs).to(modes.device) > 0]
