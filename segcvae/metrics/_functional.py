"""Pure likelihood helpers shared by the segmentation toolkit and ``segcvae.toy``."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def log_mean_exp(x: Tensor, dim: int = -1) -> Tensor:
    """``log(mean(exp(x), dim))`` computed stably with log-sum-exp.

    Args:
        x: Log-values, any shape.
        dim: Dimension to average over.

    Returns:
        ``x`` reduced over ``dim``.
    """
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def monte_carlo_log_likelihood(log_lik: Tensor, dim: int = -1) -> Tensor:
    """log p(y|x) ~= log (1/S) sum_s p(y|x, z_s) with z_s ~ p(z|x).

    Args:
        log_lik: log p(y | x, z_s), shape (..., S) with samples along ``dim``.
        dim: The sample dimension.
    """
    return log_mean_exp(log_lik, dim)


def importance_log_likelihood(
    log_lik: Tensor, log_prior: Tensor, log_proposal: Tensor, dim: int = -1
) -> Tensor:
    """log p(y|x) ~= log (1/S) sum_s p(y|x,z_s) p(z_s|x) / q(z_s|x,y) with z_s ~ q(z|x,y).

    Args:
        log_lik: log p(y | x, z_s), shape (..., S).
        log_prior: log p(z_s | x), same shape.
        log_proposal: log q(z_s | x, y), same shape.
        dim: The sample dimension.

    Returns:
        The estimate, with ``dim`` reduced. With q = p it equals :func:`monte_carlo_log_likelihood`.
    """
    return log_mean_exp(log_lik + log_prior - log_proposal, dim)


def label_log_likelihood(logits: Tensor, y: Tensor) -> Tensor:
    """log p(y | logits) summed over labelled pixels (categorical per pixel).

    Args:
        logits: (B, K, H, W) or (B, S, K, H, W).
        y: Labels (B, H, W); values outside [0, K) are not counted.

    Returns:
        (B,) or (B, S), nats per image.
    """
    if logits.dim() == 5:
        return label_log_likelihoods(logits, y.unsqueeze(1))[:, 0]
    return label_log_likelihoods(logits.unsqueeze(1), y.unsqueeze(1))[:, 0, 0]


def label_log_likelihoods(logits: Tensor, ys: Tensor) -> Tensor:
    """log p(y_r | logits_s) summed over labelled pixels, for every mask r and every sample s.

    The log-softmax is taken once and each mask gathers from it, so scoring R masks against the
    same samples costs R gathers, not R passes.

    Args:
        logits: (B, S, K, H, W).
        ys: Labels (B, R, H, W); values outside [0, K) are not counted.

    Returns:
        (B, R, S), nats per image.
    """
    k = logits.shape[-3]
    logp = logits.float().log_softmax(dim=-3)  # (B, S, K, H, W)
    out = []
    for r in range(ys.shape[1]):  # one gather per mask: (B, S, H, W) at a time, not R at once
        y = ys[:, r]
        valid = ((y >= 0) & (y < k)).unsqueeze(1)  # (B, 1, H, W)
        idx = y.clamp(0, k - 1).unsqueeze(1).expand(-1, logp.shape[1], -1, -1)
        lp = logp.gather(-3, idx.unsqueeze(-3)).squeeze(-3)  # (B, S, H, W)
        out.append((lp * valid).flatten(-2).sum(-1))
    return torch.stack(out, dim=1)
