"""Small blocks shared by the toy models: MLPs, a bounded Gaussian head, Bernoulli log-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal


def mlp(sizes: list[int], final_activation: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers with ReLU (and optional dropout) between them.

    Args:
        sizes: ``[in, hidden..., out]``.
        final_activation: Also apply ReLU (and dropout) after the last layer.
        dropout: Dropout probability after each activation.

    Returns:
        ``nn.Sequential`` mapping (..., sizes[0]) -> (..., sizes[-1]).
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Linear map to a diagonal Gaussian with a smoothly bounded log-variance.

    ``logvar = bound * tanh(raw / bound)`` is the identity near 0 and never leaves
    ``(-bound, bound)``, so ``exp(logvar)`` cannot overflow or collapse to zero in a long run.

    Args:
        in_features: Input width.
        latent_dim: Size of z.
        logvar_bound: Bound on the log-variance.
    """

    def __init__(self, in_features: int, latent_dim: int, logvar_bound: float = 8.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim)
        self.logvar_bound = logvar_bound

    def forward(self, h: Tensor) -> Normal:
        """Args: h (..., in_features). Returns: Normal with loc and scale (..., latent_dim)."""
        mu, raw = self.linear(h).chunk(2, dim=-1)
        logvar = self.logvar_bound * torch.tanh(raw / self.logvar_bound)
        return Normal(mu, torch.exp(0.5 * logvar))


def bernoulli_log_prob(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Sum of Bernoulli log-probabilities over the last dimension (nats).

    Equal to ``Bernoulli(logits=logits).log_prob(target).sum(-1)``, written with the fused
    ``binary_cross_entropy_with_logits`` because it is faster and broadcasts a pixel mask.

    Args:
        logits: (..., D).
        target: (..., D) in {0, 1} (broadcastable to ``logits``).
        weight: Optional (..., D) mask of the pixels to count.

    Returns:
        (...) log p(target | logits).
    """
    target = target.expand_as(logits)
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if weight is not None:
        nll = nll * weight
    return -nll.sum(-1)


def standard_normal(like: Tensor) -> Normal:
    """N(0, I) with the shape, dtype and device of ``like``."""
    return Normal(torch.zeros_like(like), torch.ones_like(like))
