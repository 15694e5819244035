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
