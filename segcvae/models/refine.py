"""A second, recurrent prediction stage: generation_net as a small U-Net that refines y_hat.

Sohn et al.'s generation network sees the image, the baseline's guess y_hat and z. The light heads of
:class:`~segcvae.models.generation.GenerationNet` only add a z-dependent correction to y_hat, so at
the prior mean the prediction *is* y_hat and ties the baseline CNN. :class:`RefineNet` gives the
second stage real capacity (about the decoder's last three blocks): it reads the full-resolution
decoder feature and softmax(y_hat), goes down to stride 4, where z enters, and back up with skip
connections, predicting a correction of y_hat at strides 4, 2 and 1.

Everything above z (the down path) depends on the image only and is computed once per image
(:meth:`RefineNet.context`); each z sample reruns the up path only. Built without a latent
(``latent_channels=0``) it is the same stage with no z: the control that tells a gain of the
second stage from a gain of the latent (``loss.objective=cnn model.generation=refine``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcvae.losses import DeterministicObjective
from segcvae.models.base import DeterministicModel
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.outputs import CNNOutput

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


@dataclass
class RefineContext:
    """The image-only part of the refinement stage.

    Attributes:
        skips: Down-path features at strides 1, 2, 4: (B, w, H, W), (B, 2w, H/2, W/2),
            (B, 4w, H/4, W/4).
    """

    skips: list[Tensor]

    @property
    def dtype(self) -> torch.dtype:
        return self.skips[0].dtype

    @property
    def device(self) -> torch.device:
        return self.skips[0].device


class RefineNet(nn.Module):
    """p(y | x, y_hat, z) as a U-Net over (decoder feature, softmax(y_hat)) with z at stride 4.

    Args:
        feature_channels: Channels of the baseline decoder's full-resolution feature.
        latent_channels: Z; 0 builds the stage without a latent (``forward`` then takes ``z=None``).
        classes: K.
        width: w: channels at stride 1 (2w at stride 2, 4w at stride 4).
    """

    def __init__(
        self, feature_channels: int, latent_channels: int, classes: int, *, width: int = 16
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width
        self.down1 = nn.Sequential(_conv(feature_channels + classes, w), _conv(w, w))
        self.down2 = nn.Sequential(_conv(w, 2 * w, stride=2), _conv(2 * w, 2 * w))
        self.down4 = _conv(2 * w, 4 * w, stride=2)
        self.embed_z = nn.Conv2d(latent_channels, 4 * w, 1) if latent_channels > 0 else None
        self.mid4 = _conv(4 * w, 4 * w)
        self.up2 = _conv(6 * w, 2 * w)
        self.up1 = _conv(3 * w, w)
        self.heads = nn.ModuleList(nn.Conv2d(c, classes, 1) for c in (4 * w, 2 * w, w))

    def context(self, feature: Tensor, y_hat: Tensor) -> RefineContext:
        """The down path, once per image.

        Args:
            feature: Decoder feature (B, D, H, W), H and W divisible by 4.
            y_hat: Full-resolution baseline logits (B, K, H, W).
        """
        s1 = self.down1(torch.cat([feature, y_hat.softmax(dim=1)], dim=1))
        s2 = self.down2(s1)
        return RefineContext(skips=[s1, s2, self.down4(s2)])

    def forward(
        self,
        context: RefineContext,
        z: Tensor | None,
        y_hat: list[Tensor],
        full_only: bool = False,
        samples: int = 1,
    ) -> list[Tensor]:
        """Refined logits for every z sample.

        Args:
            context: :meth:`context`'s output.
            z: Latent samples (B, S, Z, h, w) (any h, w dividing H/4: nearest upsampling to
                stride 4), or None for a stage built without a latent.
            y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
            full_only: Return only the full-resolution logits.
            samples: S when ``z`` is None (the same prediction repeated).

        Returns:
            Logits y_hat + correction at strides 4, 2, 1 (only 1 with ``full_only``), each
            (B, S, K, H/s, W/s).
        """
        s1, s2, s4 = context.skips
        b = s4.shape[0]
        if z is None:
            if self.embed_z is not None:
                raise ValueError("this refinement stage has a latent: pass z (B, S, Z, h, w)")
            s, h = 1, s4
        else:
            if self.embed_z is None:
                raise ValueError("this refinement stage was built without a latent: pass z=None")
            s = z.shape[1]
            ez = self.embed_z(z.flatten(0, 1))  # (B*S, 4w, h, w)
            ez = F.interpolate(ez, size=s4.shape[-2:], mode="nearest")
            h = (s4.unsqueeze(1) + ez.unflatten(0, (b, s))).flatten(0, 1)
        h4 = self.mid4(h)  # (B*S, 4w, H/4, W/4)
        h2 = self.up2(torch.cat([_up(h4, s2), _rep(s2, b, s)], dim=1))
        h1 = self.up1(torch.cat([_up(h2, s1), _rep(s1, b, s)], dim=1))
        hidden = [h4, h2, h1]
        scales = [2] if full_only else [0, 1, 2]
        out = []
        for i in scales:
            delta = self.heads[i](hidden[i]).unflatten(0, (b, s))  # (B, S, K, H/s, W/s)
            out.append(y_hat[i].unsqueeze(1) + delta)
        if z is None and samples != 1:
            out = [o.expand(-1, samples, -1, -1, -1) for o in out]
        return out


def _up(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _rep(x: Tensor, b: int, s: int) -> Tensor:
    """A per-image tensor (B, ...) repeated for S samples: (B*S, ...)."""
    return x.unsqueeze(1).expand(b, s, *x.shape[1:]).flatten(0, 1)


@dataclass
class RefinedContext:
    """What :class:`RefinedCNN` computes from an image.

    Attributes:
        y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
        logits: The refined logits at strides 4, 2, 1, each (B, K, H/s, W/s).
    """

    y_hat: list[Tensor]
    logits: list[Tensor]


class RefinedCNN(DeterministicModel):
    """The baseline CNN followed by :class:`RefineNet` without a latent: a deterministic two-stage
    CNN (``model.arch: refine_cnn``), the control of the refinement experiment: the same second
    stage as ``model.arch: sohn`` with ``model.generation: refine``, without z.

    Its objective is the refined prediction's multi-scale NLL plus ``loss.y_hat_weight`` times
    y_hat's, as for the latent models; ``decode_mean`` is the refined prediction.

    Args:
        classes: K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (3-5).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        refine_channels: Width w of the refinement stage.
        in_channels: Image channels.
    """

    name = "refine_cnn"

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        refine_channels: int = 16,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = classes
        self.baseline = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
        )
        feature_channels = self.baseline.heads[-1][0].in_channels
        self.generation_net = RefineNet(feature_channels, 0, classes, width=refine_channels)

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys and ``model.refine_channels``."""
        return {**unet_kwargs(cfg), "refine_channels": cfg.model.refine_channels}

    @classmethod
    def build_objective(cls, cfg: Config) -> DeterministicObjective:
        """The refined NLL plus ``loss.y_hat_weight`` times y_hat's."""
        return DeterministicObjective(
            scale_weights=cfg.loss.scale_weights, y_hat_weight=cfg.loss.y_hat_weight
        )

    def encode(self, x: Tensor) -> RefinedContext:
        """Both stages, once per image: x (B, C, H, W)."""
        f = self.baseline.features(x)
        refine = self.generation_net.context(f.decoder[-1], f.y_hat[-1])
        logits = [o[:, 0] for o in self.generation_net(refine, None, f.y_hat)]
        return RefinedContext(y_hat=f.y_hat, logits=logits)

    def forward(self, x: Tensor, y: Tensor | None = None) -> CNNOutput:
        """y_hat and the refined logits; ``y`` is unused."""
        ctx = self.encode(x)
        return CNNOutput(y_hat=ctx.y_hat, refined=ctx.logits)

    def decode_mean(self, ctx: RefinedContext) -> Tensor:
        """The refined full-resolution logits (B, K, H, W)."""
        return ctx.logits[-1]
