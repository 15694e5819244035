"""The Probabilistic U-Net (Kohl et al., NeurIPS 2018): a U-Net, a global z, and fcomb.

prior_net p(z | x) and recognition_net (the paper's "posterior net") q(z | x, y) are convolutional
encoders ending in a global, axis-aligned Gaussian; fcomb broadcasts z over the U-Net's last feature
map and combines the two with 1x1 convolutions. The image is encoded and decoded once per image;
each z then costs only fcomb, so drawing S hypotheses is cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent

from segcvae.labels import one_hot
from segcvae.losses import GaussianObjective
from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.models.latent import bounded_logvar, diagonal_gaussian
from segcvae.models.pixel_mlp import sample_mlp
from segcvae.outputs import SegOutput
from segcvae.settings import setting

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


class AxisAlignedGaussianNet(nn.Module):
    """An smp encoder, global average pooling and a 1x1 convolution -> N(mu, diag(exp(logvar))).

    The encoder is the U-Net's own encoder architecture (``encoder_name``, ``encoder_depth``) with
    its own weights, as in the paper, where prior and posterior nets copy the U-Net's down path.
    (A shallower copy would be cheaper, but smp keeps the unused deeper stages' parameters, which
    would never get a gradient: DistributedDataParallel without ``find_unused_parameters`` fails.)

    Args:
        in_channels: Input channels (3 for the prior net, 3 + K for the posterior net).
        latent_dim: Z.
        encoder_name: Any ``segmentation_models_pytorch`` encoder.
        encoder_depth: Encoder stages.
        encoder_weights: Pretrained weights name or None.
        logvar_min: Lower bound of the log-variance.
        logvar_max: Upper bound of the log-variance.
    """

    def __init__(
        self,
        in_channels: int,
        latent_dim: int = 6,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
    ) -> None:
        super().__init__()
        if not logvar_min < logvar_max:
            raise ValueError(f"need logvar_min < logvar_max, got {logvar_min}, {logvar_max}")
        self.encoder = smp.encoders.get_encoder(
            encoder_name, in_channels=in_channels, depth=encoder_depth, weights=encoder_weights
        )
        self.to_params = nn.Conv2d(self.encoder.out_channels[-1], 2 * latent_dim, 1)
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, inputs: Tensor) -> Independent:
        """Args:
            inputs: (B, C, H, W).

        Returns:
            A Gaussian with batch shape (B,) and event shape (Z,).
        """
        h = self.encoder(inputs)[-1].mean(dim=(2, 3), keepdim=True)  # (B, C_last, 1, 1)
        mu, raw = self.to_params(h).flatten(1).float().chunk(2, dim=1)  # (B, Z) each, float32
        return diagonal_gaussian(mu, bounded_logvar(raw, self.logvar_min, self.logvar_max))


class FComb(nn.Module):
    """fcomb: [feature, z broadcast over H x W] -> ``layers`` 1x1 convolutions -> logits.

    The first convolution's weight is split in a feature part, applied once per image
    (:meth:`context`), and a z part, which is a per-sample bias; the sum equals the convolution of
    the concatenation, without materialising z broadcast over every pixel; the rest runs on
    pixel blocks (:func:`~segcvae.models.pixel_mlp.sample_mlp`).

    Args:
        feature_channels: Channels of the U-Net's last feature map.
        latent_dim: Z.
        classes: K.
        hidden_channels: Width of the hidden 1x1 convolutions.
        layers: Number of 1x1 convolutions (>= 2; the last outputs the logits).
    """

    def __init__(
        self,
        feature_channels: int,
        latent_dim: int,
        classes: int,
        hidden_channels: int = 64,
        layers: int = 3,
    ) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"fcomb needs at least 2 1x1 convolutions, got {layers}")
        self.feature_channels = feature_channels
        self.first = nn.Conv2d(feature_channels + latent_dim, hidden_channels, 1)
        rest: list[nn.Module] = []
        for _ in range(layers - 2):
            rest += [nn.ReLU(inplace=True), nn.Conv2d(hidden_channels, hidden_channels, 1)]
        rest += [nn.ReLU(inplace=True), nn.Conv2d(hidden_channels, classes, 1)]
        self.rest = nn.Sequential(*rest)

    def context(self, feature: Tensor) -> Tensor:
        """The per-image part of the first convolution: (B, C, H, W) -> (B, hidden, H, W)."""
        w = self.first.weight[:, : self.feature_channels]
        return F.conv2d(feature, w, self.first.bias)

    def forward(self, context: Tensor, z: Tensor) -> Tensor:
        """Logits for every z sample.

        Args:
            context: :meth:`context` output (B, hidden, H, W).
            z: (B, S, Z).

        Returns:
            (B, S, K, H, W).
        """
        w_z = self.first.weight[:, self.feature_channels :, 0, 0]  # (hidden, Z)
        convs = [m for m in self.rest if isinstance(m, nn.Conv2d)]
        return sample_mlp(context, F.linear(z, w_z), convs)  # z is a per-sample bias


@dataclass
class ProbUNetContext:
    """Everything that depends on the image only, computed once.

    Attributes:
        image: The input images (B, C, H, W) (the posterior net reads them with the labels).
        context: fcomb's per-image part (B, hidden, H, W).
        prior: p(z | x), batch shape (B,), event shape (Z,).
    """

    image: Tensor
    context: Tensor
    prior: Independent


@dataclass
class ProbUNetSettings:
    """``model.prob_unet``: the Prob. U-Net family's own settings (it also reads ``encoder_*``,
    ``decoder_channels``, ``hidden_channels`` (fcomb's width), ``logvar_min`` / ``logvar_max``
    and ``loss.beta`` / ``kl_warmup_steps`` / ``free_bits`` for the KL term)."""

    latent_dim: int = setting(6, ge=1, help="size of the global z")
    fcomb_layers: int = setting(
        3, ge=1, help="1x1 convolutions in fcomb (the last one outputs logits)"
    )


class ProbUNet(ModelFamily):
    """Probabilistic U-Net: U-Net features, prior_net p(z|x), recognition_net q(z|x,y), fcomb
    (``model.arch: prob_unet``).

    The U-Net is :class:`BaselineCNN` (an smp encoder and U-Net decoder) without its heads; fcomb
    reads the decoder's full-resolution feature map.

    Args:
        classes: K.
        encoder_name: Any ``segmentation_models_pytorch`` encoder (U-Net, prior and posterior nets).
        encoder_depth: U-Net encoder stages.
        encoder_weights: Pretrained weights name or None.
        decoder_channels: U-Net decoder block widths, deepest first.
        latent_dim: Z (the paper: 6).
        hidden_channels: fcomb width.
        fcomb_layers: 1x1 convolutions in fcomb (the paper: 3).
        logvar_min: Lower log-variance bound.
        logvar_max: Upper log-variance bound.
        in_channels: Image channels.
    """

    #: Estimators of log p(y | x), best first: importance sampling with the posterior, Monte Carlo.
    likelihood_methods: tuple[str, ...] = ("is", "mc")
    name = "prob_unet"
    settings = ProbUNetSettings

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        latent_dim: int = 6,
        hidden_channels: int = 32,
        fcomb_layers: int = 3,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = classes
        self.latent_dim = latent_dim
        self.unet = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
            heads=False,
        )
        gaussian = dict(
            latent_dim=latent_dim,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            logvar_min=logvar_min,
            logvar_max=logvar_max,
        )
        self.prior_net = AxisAlignedGaussianNet(in_channels, **gaussian)
        self.recognition_net = AxisAlignedGaussianNet(in_channels + classes, **gaussian)
        self.fcomb = FComb(
            self.unet.decoder_channels[-1], latent_dim, classes, hidden_channels, fcomb_layers
        )

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys, ``model.prob_unet`` (:class:`ProbUNetSettings`), ``hidden_channels``
        (fcomb's width) and the log-variance bounds."""
        m, own = cfg.model, cfg.model.settings("prob_unet")
        return dict(
            **unet_kwargs(cfg),
            latent_dim=own.latent_dim,
            hidden_channels=m.hidden_channels,
            fcomb_layers=own.fcomb_layers,
            logvar_min=m.logvar_min,
            logvar_max=m.logvar_max,
        )

    @classmethod
    def build_objective(cls, cfg: Config) -> GaussianObjective:
        """The paper's loss: cross-entropy with z ~ q(z | x, y) plus beta * KL(q || p), i.e. the
        cvae objective of a Gaussian latent at one scale (``loss.beta``, ``kl_warmup_steps``,
        ``free_bits``); ``loss.objective`` and ``scale_weights`` do not apply."""
        loss = cfg.loss
        return GaussianObjective(
            "cvae",
            scale_weights=[1.0],
            beta=loss.beta,
            kl_warmup_steps=loss.kl_warmup_steps,
            free_bits=loss.free_bits,
        )

    def encode(self, x: Tensor) -> ProbUNetContext:
        """U-Net features, fcomb's per-image part and the prior (once per image).

        Args:
            x: Images (B, C, H, W).
        """
        feature = self.unet.features(x).decoder[-1]  # (B, D, H, W)
        return ProbUNetContext(
            image=x, context=self.fcomb.context(feature), prior=self.prior_net(x)
        )

    def posterior(self, ctx: ProbUNetContext, y: Tensor) -> Independent:
        """q(z | x, y) for labels y (B, H, W); ignored pixels are all-zero in the one-hot input."""
        labels = one_hot(y, self.num_classes).to(ctx.image.dtype)  # (B, K, H, W)
        return self.recognition_net(torch.cat([ctx.image, labels], dim=1))

    def generate(self, ctx: ProbUNetContext, z: Tensor) -> Tensor:
        """Logits (B, S, K, H, W) for z (B, S, Z): reruns fcomb only."""
        return self.fcomb(ctx.context, z)

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        """One training pass: z ~ q(z | x, y) with labels (the posterior path), z ~ p(z | x)
        without (the prior path); one full-resolution scale, no baseline prediction.

        Args:
            x: Images (B, C, H, W).
            y: Labels (B, H, W) long, or None.
        """
        ctx = self.encode(x)
        posterior = self.posterior(ctx, y) if y is not None else None
        z = (posterior if posterior is not None else ctx.prior).rsample()  # (B, Z)
        logits = [self.generate(ctx, z.unsqueeze(1))[:, 0]]  # [(B, K, H, W)]
        if posterior is None:
            return SegOutput(y_hat=[], prior=ctx.prior, z_prior=z, logits_prior=logits)
        return SegOutput(
            y_hat=[], prior=ctx.prior, posterior=posterior, z_posterior=z, logits_posterior=logits
        )

    def decode_mean(self, ctx: ProbUNetContext) -> Tensor:
        """Deterministic logits with z = E[z | x]: (B, K, H, W)."""
        return self.generate(ctx, ctx.prior.mean.unsqueeze(1))[:, 0]

    def decode_samples(self, ctx: ProbUNetContext, n: int) -> Tensor:
        """n hypotheses from the prior: (B, n, K, H, W)."""
        return self.generate(ctx, ctx.prior.sample((n,)).transpose(0, 1))

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """(Z,): one global z per hypothesis."""
        return (self.latent_dim,)

    def decode_noise(self, ctx: ProbUNetContext, eps: Tensor) -> Tensor:
        """Logits (B, S, K, H, W) with z = prior.mean + prior.stddev * eps, eps (S, B, Z)."""
        z = ctx.prior.mean + ctx.prior.stddev * eps  # (S, B, Z)
        return self.generate(ctx, z.transpose(0, 1))

    def likelihood_samples(
        self, ctx: ProbUNetContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Logit samples to score ``y`` against, with their log importance weights.

        ``"mc"``: z ~ p(z | x), equal weights (None); ``"is"``: z ~ q(z | x, y), weights
        log p(z | x) - log q(z | x, y) (the same estimator as Sohn et al.'s CVAE).

        Args:
            ctx: ``encode(x)``.
            y: Labels (B, H, W).
            n: Samples S.
            method: ``"is"`` or ``"mc"``.
            chunk_size: Samples per fcomb call.

        Yields:
            ``(logits (B, s, K, H, W), log_weight (B, s) or None)``, the s summing to n.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        proposal = self.posterior(ctx, y) if method == "is" else ctx.prior
        z = proposal.sample((n,))  # (S, B, Z)
        for zc in z.split(chunk_size, dim=0):
            log_w = None
            if method == "is":
                log_w = (ctx.prior.log_prob(zc) - proposal.log_prob(zc)).transpose(0, 1).float()
            yield self.generate(ctx, zc.transpose(0, 1)), log_w
