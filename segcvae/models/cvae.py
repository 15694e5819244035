"""Sohn et al. (2015)'s conditional VAE for segmentation: the part both latent kinds share.

baseline CNN -> y_hat; prior_net p(z | x, y_hat), recognition_net q(z | x, y), generation_net
p(y | x, z). :class:`SegCVAE` wires these networks; each latent kind is a family of its own that
adds its sampling, objective, likelihood estimators and noise contract:

* :class:`~segcvae.models.cvae_gaussian.GaussianSegCVAE` (``model.arch: sohn``): a Gaussian z, a
  spatial map or a global vector (``model.latent: spatial | global``);
* :class:`~segcvae.models.cvae_categorical.CategoricalSegCVAE` (``model.arch: sohn_categorical``,
  or ``sohn`` with ``model.latent: categorical``, the default): one of Z codes per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.distributions import Distribution

from segcvae.config import ConfigError
from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.models.generation import GenerationNet
from segcvae.models.prior import PriorNet
from segcvae.models.recognition import RecognitionNet
from segcvae.models.refine import RefineContext, RefineNet

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config

#: Sohn et al.'s objectives that train recognition_net q(z | x, y).
OBJECTIVES_WITH_RECOGNITION = ("cvae", "hybrid")


@dataclass
class SegContext:
    """Everything that depends on the image only: computed once, shared by all z samples.

    Attributes:
        y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
        features: Encoder feature at the latent stride (B, C, h, w).
        context: Generation-net context: (B, hidden, H/s, W/s), or the refinement stage's down
            path (``generation="refine"``).
        prior: p(z | x, y_hat), batch shape (B,), event shape (Z, h, w) (a Gaussian), or (Z,) (a
            categorical over Z codes, one-hot events).
        code_logits: A categorical latent's full-resolution logits of every code (B, Z, K, H, W),
            filled by the first inference call that needs them (``decode_mean``,
            ``decode_samples``, the exact likelihood) and reused by the others; never under autograd.
    """

    y_hat: list[Tensor]
    features: Tensor
    context: Tensor | RefineContext
    prior: Distribution
    code_logits: Tensor | None = None


class SegCVAE(ModelFamily):
    """Conditional VAE for segmentation with a recurrent connection from y_hat to the prior: the
    networks both latent kinds share (a base class, not a family: build a subclass).

    Args:
        classes: Number of classes K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (>= log2(latent_stride)).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        latent_channels: Z (channels of a Gaussian z, or codes of a categorical one).
        latent_stride: Stride of the encoder feature prior_net and recognition_net read (and of a
            spatial z map).
        hidden_channels: Width of the prior, recognition and generation nets.
        head_channels: Width of the generation net alone (0: ``hidden_channels``): what each
            code or z sample costs per pixel with ``generation="full"``.
        recognition: Build recognition_net (needed by the cvae and hybrid objectives, not gsnn).
        in_channels: Image channels.
        generation: Where z enters the generation net: ``"quarter"`` (stride 4, cheapest) or
            ``"full"`` (full resolution, pixel-sharp z-dependent boundaries), see
            :class:`GenerationNet`; or ``"refine"``: a second prediction stage with decoder-like
            capacity that refines y_hat from the image features, y_hat and z
            (:class:`~segcvae.models.refine.RefineNet`).
        refine_channels: Width of the refinement stage (``generation="refine"``).
        shared_head_layers: Hidden layers of the generation head computed once per image before z
            enters (0 or 1, see :class:`GenerationNet`; ``generation`` quarter or full).
        code_channels: The width of the layer z enters with ``shared_head_layers=1`` (0: as
            ``hidden_channels``).
        latent_net_args: What prior_net and recognition_net output, their
            :class:`~segcvae.models.latent.LatentNet` arguments beyond the sizes above
            (``global_latent``, ``logvar_min`` / ``logvar_max``, ``categorical``): each subclass
            passes its own.
    """

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str,
        encoder_depth: int,
        encoder_weights: str | None,
        decoder_channels: tuple[int, ...] | list[int],
        latent_channels: int,
        latent_stride: int,
        hidden_channels: int,
        head_channels: int,
        recognition: bool,
        in_channels: int,
        generation: str,
        refine_channels: int,
        shared_head_layers: int,
        code_channels: int,
        latent_net_args: dict[str, Any],
    ) -> None:
        super().__init__()
        self.num_classes = classes
        self.latent_channels = latent_channels
        self.baseline = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
        )
        self.latent_index = int(math.log2(latent_stride))
        enc_channels = self.baseline.encoder.out_channels
        if self.latent_index >= len(enc_channels):
            raise ValueError(
                f"latent_stride={latent_stride} needs encoder_depth >= {self.latent_index}, "
                f"got {encoder_depth}"
            )
        net_args = dict(
            feature_channels=enc_channels[self.latent_index],
            label_channels=classes,
            latent_channels=latent_channels,
            latent_stride=latent_stride,
            hidden_channels=hidden_channels,
            **latent_net_args,
        )
        self.prior_net = PriorNet(**net_args)
        self.recognition_net = RecognitionNet(**net_args) if recognition else None
        self.context_index = 0 if generation == "quarter" else -1  # decoder stride 4 or 1
        context_channels = (
            self.baseline.decoder_channels_quarter
            if generation == "quarter"
            else self.baseline.heads[-1][0].in_channels
        )
        self.generation_net: GenerationNet | RefineNet
        if generation == "refine":
            self.generation_net = RefineNet(
                context_channels, latent_channels, classes, width=refine_channels
            )
        else:
            self.generation_net = GenerationNet(
                context_channels,
                latent_channels,
                classes,
                head_channels or hidden_channels,
                inject=generation,
                shared_layers=shared_head_layers,
                code_channels=code_channels,
            )

    # ------------------------------------------------------------------ built from the config
    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys, the shared networks' (``model.latent_channels``, ``latent_stride``,
        ``generation``, ``hidden_channels``, ``head_channels``, ``refine_channels``,
        ``shared_head_layers``, ``code_channels``) and, from ``loss.objective``, whether to build
        recognition_net (cvae and hybrid need it); a subclass adds its latent's keys."""
        m = cfg.model
        objective = cfg.loss.objective
        if objective not in ("gsnn", *OBJECTIVES_WITH_RECOGNITION):
            raise ConfigError(
                f"loss.objective: model.arch={m.arch} trains with cvae, gsnn or hybrid, got "
                f"{objective!r} (a CNN is model.arch=cnn)"
            )
        return dict(
            **unet_kwargs(cfg),
            latent_channels=m.latent_channels,
            latent_stride=m.latent_stride,
            hidden_channels=m.hidden_channels,
            head_channels=m.head_channels,
            recognition=objective in OBJECTIVES_WITH_RECOGNITION,
            generation=m.generation,
            refine_channels=m.refine_channels,
            shared_head_layers=m.shared_head_layers,
            code_channels=m.code_channels,
        )

    @classmethod
    def objective_settings(cls, cfg: Config) -> dict[str, Any]:
        """The ``loss.*`` settings both latent kinds' objectives take."""
        loss = cfg.loss
        return dict(
            alpha=loss.alpha,
            scale_weights=loss.scale_weights,
            y_hat_weight=loss.y_hat_weight,
            beta=loss.beta,
            kl_warmup_steps=loss.kl_warmup_steps,
            free_bits=loss.free_bits,
        )

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """The objective's name (cvae, gsnn, hybrid): what the logs call Sohn et al.'s models."""
        return cfg.loss.objective

    @classmethod
    def report_fields(cls, cfg: Config) -> dict[str, Any]:
        """``{"objective": loss.objective}``."""
        return {"objective": cfg.loss.objective}

    # ------------------------------------------------------------------ the shared networks
    def encode(self, x: Tensor) -> SegContext:
        """Run everything that depends on the image only (once per image).

        Args:
            x: Images (B, C, H, W).
        """
        f = self.baseline.features(x)
        features = f.encoder[self.latent_index]
        prior = self.prior_net(features, f.y_hat[-1])
        context = self.generation_net.context(f.decoder[self.context_index], f.y_hat[-1])
        return SegContext(y_hat=f.y_hat, features=features, context=context, prior=prior)

    def posterior(self, ctx: SegContext, y: Tensor) -> Distribution:
        """q(z | x, y) for labels y (B, H, W), batch shape (B,)."""
        if self.recognition_net is None:
            raise RuntimeError("this model has no recognition_net (it was built for gsnn)")
        return self.recognition_net(ctx.features, y)

    def generate(self, ctx: SegContext, z: Tensor, full_only: bool = False) -> list[Tensor]:
        """Logits at strides 4, 2, 1, each (B, S, K, H/s, W/s), for z (B, S, Z, h, w).

        With ``full_only`` only the full-resolution logits are computed (a list of one).
        """
        return self.generation_net(ctx.context, z, ctx.y_hat, full_only=full_only)
