"""SegCVAE: baseline CNN -> y_hat; prior_net, recognition_net, generation_net (Sohn et al. 2015)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Independent

from segcvae.models.baseline import BaselineCNN
from segcvae.models.generation import GenerationNet
from segcvae.models.output import SegOutput
from segcvae.models.prior import PriorNet
from segcvae.models.recognition import RecognitionNet


@dataclass
class SegContext:
    """Everything that depends on the image only: computed once, shared by all z samples.

    Attributes:
        y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
        features: Encoder feature at the latent stride (B, C, h, w).
        context: Generation-net context (B, hidden, H/4, W/4).
        prior: p(z | x, y_hat), batch shape (B,), event shape (Z, h, w).
    """

    y_hat: list[Tensor]
    features: Tensor
    context: Tensor
    prior: Independent


class SegCVAE(nn.Module):
    """Conditional VAE for segmentation with a recurrent connection from y_hat to the prior.

    Args:
        classes: Number of classes K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (>= log2(latent_stride)).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        latent: ``"spatial"`` (a z map at ``latent_stride``) or ``"global"`` (one z vector).
        latent_channels: Z.
        latent_stride: Stride of the z map.
        hidden_channels: Width of the prior, recognition and generation nets.
        recognition: Build recognition_net (needed by the cvae and hybrid objectives, not gsnn).
        logvar_min: Lower log-variance bound.
        logvar_max: Upper log-variance bound.
        in_channels: Image channels.
    """

    def __init__(
        self,
        classes: int,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 32, 32, 16),
        latent: str = "spatial",
        latent_channels: int = 32,
        latent_stride: int = 16,
        hidden_channels: int = 64,
        recognition: bool = True,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if latent not in ("spatial", "global"):
            raise ValueError(f"latent must be 'spatial' or 'global', got {latent!r}")
        self.num_classes = classes
        self.baseline = BaselineCNN(
            classes, encoder_name, encoder_depth, encoder_weights, decoder_channels, in_channels
        )
        self.latent_index = int(math.log2(latent_stride))
        enc_channels = self.baseline.encoder.out_channels
        if self.latent_index >= len(enc_channels):
            raise ValueError(
                f"latent_stride={latent_stride} needs encoder_depth >= {self.latent_index}, "
                f"got {encoder_depth}"
            )
        gaussian_args = dict(
            feature_channels=enc_channels[self.latent_index],
            label_channels=classes,
            latent_channels=latent_channels,
            latent_stride=latent_stride,
            hidden_channels=hidden_channels,
            global_latent=latent == "global",
            logvar_min=logvar_min,
            logvar_max=logvar_max,
        )
        self.prior_net = PriorNet(**gaussian_args)
        self.recognition_net = RecognitionNet(**gaussian_args) if recognition else None
        self.generation_net = GenerationNet(
            self.baseline.decoder_channels_quarter, latent_channels, classes, hidden_channels
        )

    def encode(self, x: Tensor) -> SegContext:
        """Run everything that depends on the image only (once per image).

        Args:
            x: Images (B, C, H, W).
        """
        f = self.baseline.features(x)
        features = f.encoder[self.latent_index]
        prior = self.prior_net(features, f.y_hat[-1])
        return SegContext(
            y_hat=f.y_hat,
            features=features,
            context=self.generation_net.context(f.decoder[0]),
            prior=prior,
        )

    def posterior(self, ctx: SegContext, y: Tensor) -> Independent:
        """q(z | x, y) for labels y (B, H, W)."""
        if self.recognition_net is None:
            raise RuntimeError("this model has no recognition_net (it was built for gsnn)")
        return self.recognition_net(ctx.features, y)

    def generate(self, ctx: SegContext, z: Tensor) -> list[Tensor]:
        """Logits at strides 4, 2, 1, each (B, S, K, H/s, W/s), for z (B, S, Z, h, w)."""
        return self.generation_net(ctx.context, z, ctx.y_hat)

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        """One training / evaluation pass.

        The prior path (GSNN) is always computed with one reparameterised sample; when ``y`` is
        given and the model has a recognition net, the posterior path (CVAE) is computed too. Both
        paths share one batched call of the generation head.

        Args:
            x: Images (B, C, H, W).
            y: Labels (B, H, W) long, or None.
        """
        ctx = self.encode(x)
        z_prior = ctx.prior.rsample()  # (B, Z, h, w)
        posterior = None
        zs = [z_prior]
        if y is not None and self.recognition_net is not None:
            posterior = self.posterior(ctx, y)
            zs.insert(0, posterior.rsample())
        logits = self.generate(ctx, torch.stack(zs, dim=1))  # each (B, n_paths, K, h, w)
        by_path = [[scale[:, i] for scale in logits] for i in range(len(zs))]
        return SegOutput(
            y_hat=ctx.y_hat,
            prior=ctx.prior,
            posterior=posterior,
            z_prior=z_prior,
            z_posterior=zs[0] if posterior is not None else None,
            logits_prior=by_path[-1],
            logits_posterior=by_path[0] if posterior is not None else None,
        )

    def decode_mean(self, ctx: SegContext) -> Tensor:
        """Deterministic logits with z = E[z | x]: (B, K, H, W)."""
        return self.generate(ctx, ctx.prior.mean.unsqueeze(1))[-1][:, 0]

    def decode_samples(self, ctx: SegContext, n: int) -> Tensor:
        """n hypotheses from the prior: full-resolution logits (B, n, K, H, W)."""
        z = ctx.prior.sample((n,)).transpose(0, 1)  # (B, n, Z, h, w)
        return self.generate(ctx, z)[-1]

    def predict(self, x: Tensor) -> Tensor:
        """Deterministic prediction with z = E[z | x]: full-resolution logits (B, K, H, W)."""
        return self.decode_mean(self.encode(x))

    def sample(self, x: Tensor, n: int) -> Tensor:
        """n hypotheses from the prior: full-resolution logits (B, n, K, H, W)."""
        return self.decode_samples(self.encode(x), n)
