"""The dataclasses the models' ``forward`` return and the objectives in ``segcvae.losses`` read.

They live outside ``segcvae.models`` so that the losses depend on what a model computed, not on the
model classes (``segcvae.losses`` imports nothing from ``segcvae.models``). One dataclass per kind
of output: a deterministic prediction (:class:`CNNOutput`), a prediction with a latent z
(:class:`SegOutput`: Sohn et al.'s CVAE with a Gaussian or categorical z, the Probabilistic
U-Net) and a Gaussian over the logits themselves (:class:`SSNOutput`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from torch.distributions import Distribution


@dataclass
class CNNOutput:
    """What one forward pass of a deterministic model computed. Lists hold the scales 1/4, 1/2, 1.

    Attributes:
        y_hat: The baseline CNN's logits, each (B, K, H/s, W/s).
        refined: A second stage's logits, each (B, K, H/s, W/s) (``RefinedCNN``), or None when
            y_hat is the prediction.
    """

    y_hat: list[Tensor]
    refined: list[Tensor] | None = None

    @property
    def logits(self) -> Tensor:
        """The full-resolution prediction (B, K, H, W)."""
        return (self.refined if self.refined is not None else self.y_hat)[-1]


@dataclass
class SegOutput:
    """What one forward pass of a latent-variable model computed. Lists hold the prediction scales
    (1/4, 1/2, 1 for Sohn et al.'s models; only 1 for the Probabilistic U-Net).

    Attributes:
        y_hat: Baseline logits, each (B, K, H/s, W/s); empty for a family without a baseline
            prediction (the Probabilistic U-Net).
        prior: p(z | x, y_hat), event shape (Z, h, w) or (Z,).
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
            if path:
                return path[-1]
        raise ValueError("SegOutput holds no logits")  # pragma: no cover


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
