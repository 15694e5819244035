"""Stochastic Segmentation Networks (Monteiro et al., NeurIPS 2020): a Gaussian over the logits.

The logits of all pixels and classes are one multivariate Gaussian with a low-rank plus diagonal
covariance, ``N(mu, P P^T + D)``, whose mean ``mu``, factor ``P`` (rank R) and diagonal ``D`` come
from 1x1 heads on the U-Net's last decoder feature map. Hypotheses are logit samples: drawing them
reruns no network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import LowRankMultivariateNormal

from segcvae.losses import MonteCarloObjective
from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.models.latent import bounded_logvar, low_rank_draws
from segcvae.outputs import SSNOutput
from segcvae.settings import setting

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


@dataclass
class SSNContext:
    """The logit distribution of a batch (everything the image determines): a Gaussian with batch
    shape (B,) and event (E,) = (K*H*W,), the event flattened from (K, H, W) in that order.

    Attributes:
        loc: Mean (B, E).
        cov_factor: Covariance factor P (B, E, R).
        cov_diag: Diagonal D of the covariance P P^T + D (B, E).
        shape: (K, H, W).
    """

    loc: Tensor
    cov_factor: Tensor
    cov_diag: Tensor
    shape: tuple[int, int, int]

    @property
    def distribution(self) -> LowRankMultivariateNormal:
        """The ``LowRankMultivariateNormal``, built when asked: it computes a Cholesky factor
        (for ``log_prob`` and ``entropy``) that the mean and the samples do not need, and that the
        ONNX export could not express."""
        return LowRankMultivariateNormal(self.loc, self.cov_factor, self.cov_diag)

    @property
    def mean(self) -> Tensor:
        """Mean logits (B, K, H, W)."""
        return self.loc.unflatten(-1, self.shape)

    def sample(self, n: int, reparameterised: bool = False) -> Tensor:
        """n logit samples (B, n, K, H, W): the distribution's own draws (the noise is drawn in
        ``rsample``'s order, so a seed gives the same samples), computed by
        :func:`~segcvae.models.latent.low_rank_draws` without copying the factor per sample."""
        with torch.set_grad_enabled(reparameterised and torch.is_grad_enabled()):
            b, _, rank = self.cov_factor.shape
            eps_w = self.loc.new_empty(n, b, rank).normal_()
            eps_d = self.loc.new_empty(n, *self.loc.shape).normal_()  # (n, B, E)
            out = low_rank_draws(self, eps_w.transpose(0, 1), eps_d.transpose(0, 1))
        return out.unflatten(-1, self.shape)


@dataclass
class SSNSettings:
    """``model.ssn``: the SSN family's own settings (it also reads ``encoder_*``,
    ``decoder_channels`` and ``logvar_min`` / ``logvar_max`` for the diagonal)."""

    rank: int = setting(10, ge=1, help="rank R of the covariance factor of the logit Gaussian")
    mc_samples: int = setting(20, ge=1, help="M logit samples per image in the training loss")
    epsilon: float = setting(
        1e-5, gt=0, help="added to the diagonal variance (a floor that keeps it invertible)"
    )


class SSN(ModelFamily):
    """Stochastic Segmentation Network on :class:`BaselineCNN` features (``model.arch: ssn``).

    Args:
        classes: K.
        encoder_name: Any ``segmentation_models_pytorch`` encoder.
        encoder_depth: Encoder stages.
        encoder_weights: Pretrained weights name or None.
        decoder_channels: Decoder block widths, deepest first.
        rank: R, the rank of the covariance factor (the paper: 10).
        mc_samples: M, logit samples drawn by :meth:`forward` for the training loss (the paper: 20).
        epsilon: Added to the diagonal variance, a floor that keeps the covariance invertible.
        logvar_min: Lower bound of the diagonal's log-variance (before ``epsilon``).
        logvar_max: Upper bound of the diagonal's log-variance.
        in_channels: Image channels.
    """

    #: Estimators of log p(y | x): Monte Carlo over logit samples (there is no latent to propose).
    likelihood_methods: tuple[str, ...] = ("mc",)
    name = "ssn"
    settings = SSNSettings

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        rank: int = 10,
        mc_samples: int = 20,
        epsilon: float = 1e-5,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if rank < 1 or mc_samples < 1:
            raise ValueError(f"rank and mc_samples must be >= 1, got {rank}, {mc_samples}")
        if epsilon <= 0 or not logvar_min < logvar_max:
            raise ValueError("need epsilon > 0 and logvar_min < logvar_max")
        self.num_classes = classes
        self.rank = rank
        self.mc_samples = mc_samples
        self.epsilon = epsilon
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max
        self.unet = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
            heads=False,
        )
        d = self.unet.decoder_channels[-1]
        self.mean_head = nn.Conv2d(d, classes, 1)
        self.log_diagonal_head = nn.Conv2d(d, classes, 1)
        self.factor_head = nn.Conv2d(d, classes * rank, 1)

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys, ``model.ssn`` (:class:`SSNSettings`) and the diagonal's
        log-variance bounds."""
        m, own = cfg.model, cfg.model.settings("ssn")
        return dict(
            **unet_kwargs(cfg),
            rank=own.rank,
            mc_samples=own.mc_samples,
            epsilon=own.epsilon,
            logvar_min=m.logvar_min,
            logvar_max=m.logvar_max,
        )

    @classmethod
    def build_objective(cls, cfg: Config) -> MonteCarloObjective:
        """The Monte Carlo NLL over ``model.ssn.mc_samples`` logit samples (no ``loss.*`` keys)."""
        return MonteCarloObjective()

    def encode(self, x: Tensor) -> SSNContext:
        """The Gaussian over the logits of every pixel and class.

        Args:
            x: Images (B, C, H, W).
        """
        feature = self.unet.features(x).decoder[-1]  # (B, D, H, W)
        b, _, h, w = feature.shape
        k = self.num_classes
        mu = self.mean_head(feature).flatten(1)  # (B, K*H*W)
        logvar = bounded_logvar(self.log_diagonal_head(feature), self.logvar_min, self.logvar_max)
        diagonal = logvar.exp().flatten(1) + self.epsilon  # (B, K*H*W)
        # Channel r*K + k of the factor head is column r of P at class k.
        factor = self.factor_head(feature).reshape(b, self.rank, k * h * w).transpose(1, 2)
        return SSNContext(mu.float(), factor.float(), diagonal.float(), shape=(k, h, w))

    def forward(self, x: Tensor, y: Tensor | None = None) -> SSNOutput:
        """The logit distribution and M reparameterised samples of it (for the loss).

        Args:
            x: Images (B, C, H, W).
            y: Accepted for the common interface; unused (the loss scores the samples against it).
        """
        ctx = self.encode(x)
        samples = ctx.sample(self.mc_samples, reparameterised=True)  # (B, M, K, H, W)
        return SSNOutput(mean=ctx.mean, distribution=ctx.distribution, logit_samples=samples)

    def decode_mean(self, ctx: SSNContext) -> Tensor:
        """The mean logits (B, K, H, W)."""
        return ctx.mean

    def decode_samples(self, ctx: SSNContext, n: int) -> Tensor:
        """n logit samples (B, n, K, H, W), drawn directly (no network rerun)."""
        return ctx.sample(n)

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """(R + K H W,): the factor's R weights, then one value per logit."""
        return (self.rank + self.num_classes * height * width,)

    def decode_noise(self, ctx: SSNContext, eps: Tensor) -> Tensor:
        """Logit draws ``mu + P eps[:R] + sqrt(D) eps[R:]`` (B, S, K, H, W), eps (S, B, R + KHW)."""
        eps = eps.transpose(0, 1)  # (B, S, R + E)
        draws = low_rank_draws(ctx, eps[..., : self.rank], eps[..., self.rank :])
        return draws.unflatten(-1, ctx.shape)

    def likelihood_samples(
        self, ctx: SSNContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Logit samples to score ``y`` against (Monte Carlo: equal weights, None).

        Args:
            ctx: ``encode(x)``.
            y: Labels (B, H, W) (unused: the proposal is the model's own distribution).
            n: Samples S.
            method: ``"mc"``.
            chunk_size: Samples drawn at a time (bounds memory).

        Yields:
            ``(logits (B, s, K, H, W), None)``, the s summing to n.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        for start in range(0, n, chunk_size):
            yield ctx.sample(min(chunk_size, n - start)), None
