"""Pure loss functions (smp-style ``_functional``); the objectives in this package wrap them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, OneHotCategorical, kl_divergence

from segcvae.labels import one_hot
from segcvae.metrics._functional import label_log_likelihood, log_mean_exp


def soft_targets(y: Tensor, num_classes: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Class-fraction targets at a coarser scale: area-pooled one-hot labels.

    Args:
        y: Labels (B, H, W); values outside [0, K) (the ignore index) count as unlabelled.
        num_classes: K.
        size: Target (h, w).

    Returns:
        ``(targets, valid)``: (B, K, h, w) class fractions and (B, h, w) labelled fraction.
    """
    return scale_targets(y, num_classes, [size])[0]


def scale_targets(
    y: Tensor, num_classes: int, sizes: list[tuple[int, int]]
) -> list[tuple[Tensor, Tensor]]:
    """:func:`soft_targets` at several sizes, area-pooled from one one-hot map.

    Args:
        y: Labels (B, H, W); values outside [0, K) count as unlabelled.
        num_classes: K.
        sizes: Target (h, w) per scale.

    Returns:
        One ``(targets, valid)`` pair per size: (B, K, h, w) and (B, h, w).
    """
    full = one_hot(y, num_classes)
    out = []
    for size in sizes:
        t = full if full.shape[-2:] == tuple(size) else F.interpolate(full, size=size, mode="area")
        out.append((t, t.sum(dim=1)))
    return out


def soft_cross_entropy(logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
    """Mean cross-entropy per labelled pixel against soft targets.

    Args:
        logits: (B, K, h, w) or (B, S, K, h, w) (averaged over the S samples too).
        targets: (B, K, h, w) class fractions.
        valid: (B, h, w) labelled fraction of each pixel.

    Returns:
        A scalar, nats per pixel. Equals ``F.cross_entropy(ignore_index=...)`` at full resolution.
    """
    if logits.dim() == 5:
        targets = targets.unsqueeze(1)
        valid = valid.unsqueeze(1).expand(-1, logits.shape[1], -1, -1)
    ce = -(targets * logits.float().log_softmax(dim=-3)).sum(dim=-3)
    return ce.sum() / valid.sum().clamp_min(1e-6)


def multiscale_nll(
    logits: list[Tensor],
    y: Tensor,
    weights: list[float] | tuple[float, ...],
    targets: list[tuple[Tensor, Tensor]] | None = None,
    set_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """Weighted sum of the per-pixel NLL at 1/4, 1/2 and 1.

    Args:
        logits: Logits at strides 4, 2, 1, each (B, K, H/s, W/s) or (B, S, K, H/s, W/s).
        y: Labels (B, H, W); or a set of masks per image (B, M, H, W), scored as the mean over
            the (image, mask) pairs: the cross-entropy is linear in the target, so the M targets
            are summed per image and the logits are not repeated.
        weights: One weight per scale.
        targets: ``scale_targets(y, K, sizes)`` if already computed (of ``y.flatten(0, 1)`` for a
            set), or None.
        set_weights: (B, M) weights of a set's (image, mask) pairs (e.g. the masks'
            probabilities): the targets are then summed with these weights, a weighted mean
            over the pairs instead of the plain one. None = every pair alike.

    Returns:
        ``{"nll": weighted sum, "nll_4": ..., "nll_2": ..., "nll_1": ...}`` (nats per pixel).
    """
    if len(weights) != len(logits):
        raise ValueError(f"{len(logits)} scales but {len(weights)} scale_weights")
    k = logits[-1].shape[-3]
    if targets is None:
        targets = scale_targets(y.flatten(0, -3), k, [lg.shape[-2:] for lg in logits])
    terms: dict[str, Tensor] = {}
    total = logits[-1].new_zeros((), dtype=torch.float32)
    for lg, w, (t, v) in zip(logits, weights, targets, strict=True):
        if y.dim() == 4 and set_weights is None:  # the M masks' targets summed per image
            t, v = t.unflatten(0, y.shape[:2]).sum(1), v.unflatten(0, y.shape[:2]).sum(1)
        elif y.dim() == 4:  # ... weighted by the pairs' weights
            pair_w = set_weights.to(t.dtype)
            t = (t.unflatten(0, y.shape[:2]) * pair_w[:, :, None, None, None]).sum(1)
            v = (v.unflatten(0, y.shape[:2]) * pair_w[:, :, None, None]).sum(1)
        nll = soft_cross_entropy(lg, t, v)
        terms[f"nll_{y.shape[-1] // lg.shape[-1]}"] = nll.detach()
        total = total + w * nll
    terms["nll"] = total
    return terms


def multiscale_nll_per_sample(
    logits: list[Tensor], y: Tensor, targets: list[tuple[Tensor, Tensor]] | None = None
) -> list[Tensor]:
    """Per-image, per-sample NLL at each scale: one (B, S) tensor per scale.

    Entry ``[b, s]`` is the mean cross-entropy per labelled pixel of image b under sample s, so
    ``sum_i weights[i] * out[i][b, s]`` is what :func:`multiscale_nll` gives for that one image
    and sample. With a set of M masks per image, y (B, M, H, W), each entry is (B, M, S): every
    mask under every sample, as one batched product per scale (the log-softmax computed once).

    Args:
        logits: Logits at strides 4, 2, 1, each (B, S, K, H/s, W/s).
        y: Labels (B, H, W), or (B, M, H, W).
        targets: ``scale_targets(y.flatten(0, -3), K, sizes)`` if already computed, or None.
    """
    k = logits[-1].shape[-3]
    sets = y if y.dim() == 4 else y.unsqueeze(1)  # (B, M, H, W)
    b, m = sets.shape[:2]
    if targets is None:
        targets = scale_targets(sets.flatten(0, 1), k, [lg.shape[-2:] for lg in logits])
    out = []
    for lg, (t, v) in zip(logits, targets, strict=True):  # all M masks x all S samples per scale
        log_p = lg.float().log_softmax(dim=-3)  # (B, S, K, h, w)
        # t (B*M, K, h, w), v (B*M, h, w). (B, S, Kq) @ (B, Kq, M): the gradient of log_p is then
        # a contiguous (B, S, Kq) product (einsum's "bmq,bsq->bms" gave it transposed, and the
        # log-softmax backward copied it)
        ce = -torch.bmm(log_p.flatten(2), t.reshape(b, m, -1).transpose(1, 2)).transpose(1, 2)
        ce = ce / v.reshape(b, m, 1, -1).sum(-1).clamp_min(1e-6)  # (B, M, S)
        out.append(ce if y.dim() == 4 else ce[:, 0])
    return out


def kl_mean(q: Distribution, p: Distribution, free_bits: float = 0.0) -> Tensor:
    """Batch-mean KL(q || p) in nats per image, analytic for diagonal Gaussians.

    With ``free_bits > 0`` each latent channel's batch-mean KL is floored at ``free_bits`` nats
    (Kingma et al. 2016), so channels under the floor get no gradient.

    Args:
        q: Posterior, batch shape (B,), event shape (Z, h, w) or (Z,).
        p: Prior, same shapes.

    Returns:
        A scalar.
    """
    if free_bits <= 0:
        return kl_divergence(q, p).mean()
    if isinstance(q, OneHotCategorical):  # one code per image: the floor applies to the whole KL
        return kl_divergence(q, p).mean().clamp_min(free_bits)
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        raise TypeError("free bits need Independent distributions with a channel dimension")
    kl = kl_divergence(q.base_dist, p.base_dist)  # (B, Z, h, w) or (B, Z)
    per_channel = kl.reshape(kl.shape[0], kl.shape[1], -1).sum(-1).mean(0)  # (Z,)
    return per_channel.clamp_min(free_bits).sum()


def monte_carlo_nll(logit_samples: Tensor, y: Tensor) -> Tensor:
    """SSN's loss: -log (1/M) sum_m p(y | logits_m), per labelled pixel, batch mean.

    Each image's log-likelihood log (1/M) sum_m prod_pixels p(y_pixel | logits_m) is computed with
    log-sum-exp over the M samples, then divided by that image's number of labelled pixels (so the
    value is in nats per pixel like the other objectives' terms), then averaged over the batch.

    Args:
        logit_samples: (B, M, K, H, W) logit samples (reparameterised, for gradients).
        y: Labels (B, H, W); values outside [0, K) are left out.

    Returns:
        A scalar.
    """
    k = logit_samples.shape[-3]
    labelled = ((y >= 0) & (y < k)).flatten(1).sum(1).clamp_min(1)  # (B,)
    log_lik = log_mean_exp(label_log_likelihood(logit_samples, y), dim=1)  # (B,)
    return -(log_lik / labelled).mean()
