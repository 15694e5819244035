"""The dataclasses the models' ``forward`` return and the objectives in ``segcvae.losses`` read.

They live outside ``segcvae.models`` so that the losses depend on what a model computed, not on the
model classes (``segcvae.losses`` imports nothing from ``segcvae.models``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import Distribution


@dataclass
class SegOutput:
    """What one forward pass of Sohn et al.'s models computed. Lists hold the scales 1/4, 1/2, 1.

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


@dataclass
class ProbUNetOutput:
    """What one forward pass of the Probabilistic U-Net computed.

    Attributes:
        logits: fcomb logits (B, K, H, W) for ``z``: z ~ q(z | x, y) when ``y`` was given, else
            z ~ p(z | x).
        prior: p(z | x), batch shape (B,), event shape (Z,).
        posterior: q(z | x, y), same shapes; None without ``y``.
        z: The sample the logits were computed from (B, Z).
    """

    logits: Tensor
    prior: Distribution
    posterior: Distribution | None
    z: Tensor


@dataclass
class SSNOutput:
    """What one forward pass of a Stochastic Segmentation Network computed.

    Attributes:
        mean: Mean logits (B, K, H, W).
        distribution: The Gaussian over the flattened logits, batch shape (B,), event (K*H*W,).
        logit_samples: Reparameterised draws of the logits (B, M, K, H, W), M = the loss's samples.
    """

    mean: Tensor
    distribution: Distribution
    logit_samples: Tensor

    @property
    def logits(self) -> Tensor:
        """The mean logits (B, K, H, W)."""
        return self.mean
