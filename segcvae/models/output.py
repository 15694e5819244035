"""The dataclass every model's ``forward`` returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import Distribution


@dataclass
class SegOutput:
    """What one forward pass computed. Lists hold the scales 1/4, 1/2, 1.

    Attributes:
        y_hat: Baseline logits, each (B, K, H/s, W/s).
        prior: p(z | x, y_hat), event shape (Z, h, w); None for the baseline CNN.
        posterior: q(z | x, y); None without ``y`` or without a recognition net.
        z_prior: One sample of the prior (B, Z, h, w).
        z_posterior: One sample of the posterior (B, Z, h, w).
        logits_prior: Generation logits with z = z_prior, each (B, K, H/s, W/s) (the GSNN path).
        logits_posterior: Generation logits with z = z_posterior (the CVAE path).
        code_logits: For a categorical latent, the generation logits of every code, each
            (B, Z, K, H/s, W/s); the objectives take exact expectations over them.
    """

    y_hat: list[Tensor]
    prior: Distribution | None = None
    posterior: Distribution | None = None
    z_prior: Tensor | None = None
    z_posterior: Tensor | None = None
    logits_prior: list[Tensor] | None = None
    logits_posterior: list[Tensor] | None = None
    code_logits: list[Tensor] | None = None

    @property
    def logits(self) -> Tensor:
        """The best single full-resolution prediction available: (B, K, H, W)."""
        for path in (self.logits_posterior, self.logits_prior, self.y_hat):
            if path is not None:
                return path[-1]
        raise ValueError("SegOutput holds no logits")  # pragma: no cover
