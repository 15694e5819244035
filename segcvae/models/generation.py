"""generation_net p(y | x, z): a head that turns z into a correction of y_hat."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcvae.models.pixel_mlp import sample_mlp

Injection = Literal["quarter", "full"]


class GenerationNet(nn.Module):
    """p(y | x, z) at 1/4, 1/2 and full resolution.

    The decoder feature is projected once per image (:meth:`context`); each z sample then costs
    a small stack of convolutions whose output (a logit correction) is added to the baseline's
    y_hat. Drawing S hypotheses therefore reruns only this head, batched over S. Where z enters:

    * ``"quarter"``: at stride 4 (1x1 embedding of z, one 3x3 and one 1x1 convolution); the
      correction is upsampled bilinearly to each scale. Cheapest; object boundaries that depend
      on z are only as sharp as a 4-pixel grid.
    * ``"full"``: at full resolution, as the Probabilistic U-Net's ``fcomb`` (z broadcast over the
      last decoder feature, three 1x1 convolutions); the coarse scales are the full-resolution
      logits average-pooled. Boundaries that depend on z are pixel-sharp. With a global (or
      categorical) z, z is a per-sample bias of the first hidden layer and the head runs as
      :func:`~segcvae.models.pixel_mlp.sample_mlp` on pixel blocks (4-5x faster on CPU than the
      same 1x1 convolutions over B*S full-resolution maps).

    Args:
        feature_channels: Channels of the decoder feature the head reads (stride 4 for
            ``"quarter"``, stride 1 for ``"full"``).
        latent_channels: Z.
        classes: K.
        hidden_channels: Width of the head.
        inject: ``"quarter"`` or ``"full"``.
        shared_layers: Hidden layers of the head computed once per image, before z enters: 0
            (z is a bias of the first hidden layer: two layers per sample) or 1 (z is a bias of
            the second: the first is the same for every sample, and a sample costs one ReLU and
            one matrix product to the K logits).
        code_channels: With ``shared_layers=1``, the width of the layer z enters (0: as
            ``hidden_channels``): what a sample costs per pixel.
    """

    def __init__(
        self,
        feature_channels: int,
        latent_channels: int,
        classes: int,
        hidden_channels: int = 32,
        inject: Injection = "quarter",
        shared_layers: int = 0,
        code_channels: int = 0,
    ) -> None:
        super().__init__()
        if inject not in ("quarter", "full"):
            raise ValueError(f"inject must be 'quarter' or 'full', got {inject!r}")
        if shared_layers not in (0, 1):
            raise ValueError(f"shared_layers must be 0 or 1, got {shared_layers}")
        self.inject = inject
        self.shared_layers = shared_layers
        if code_channels and not shared_layers:
            raise ValueError("code_channels needs shared_layers=1 (the layer z enters after)")
        width = code_channels or hidden_channels  # the width z enters at, when it enters late
        self.project = nn.Conv2d(feature_channels, hidden_channels, 1)
        self.embed_z = nn.Conv2d(latent_channels, width if shared_layers else hidden_channels, 1)
        k = 3 if inject == "quarter" else 1
        self.head = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden_channels, width, k, padding=k // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, classes, 1),
        )

    def context(self, feature: Tensor, y_hat: Tensor | None = None) -> Tensor:
        """Per-image part of the head, computed once: (B, D, h, w) -> (B, hidden, h, w): the
        projected feature, and with ``shared_layers=1`` the head's first hidden layer too.

        ``y_hat`` is accepted for the interface :class:`~segcvae.models.refine.RefineNet` shares
        and unused: this head adds its output to y_hat instead of reading it.
        """
        ctx = self.project(feature)
        return self.head[1](torch.relu(ctx)) if self.shared_layers else ctx

    @staticmethod
    def _pooled(full: Tensor, y_hat: list[Tensor]) -> list[Tensor]:
        """Full-resolution logits (B, S, K, H, W) and their average pools to y_hat's coarse scales.

        Each coarse scale is pooled from the next finer one (1/4 from 1/2): the same means (of
        equal-sized groups), with one full-resolution pass and one full-resolution backward.
        """
        b, s = full.shape[:2]
        pooled = [full]  # finest first
        for y in reversed(y_hat[:-1]):
            finer = pooled[-1].flatten(0, 1)
            coarse = F.avg_pool2d(finer, kernel_size=finer.shape[-1] // y.shape[-1])
            pooled.append(coarse.unflatten(0, (b, s)))
        return pooled[::-1]

    def forward(
        self, context: Tensor, z: Tensor, y_hat: list[Tensor], full_only: bool = False
    ) -> list[Tensor]:
        """Logits for every z sample.

        Args:
            context: Output of :meth:`context` (B, hidden, H/s, W/s), s = 4 or 1.
            z: Latent samples (B, S, Z, h, w); h = w = 1 for a global latent.
            y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
            full_only: Compute only the full-resolution logits (inference needs nothing else).

        Returns:
            Logits at strides 4, 2, 1 (or only 1 with ``full_only``), each (B, S, K, H/s, W/s).
        """
        b, s = z.shape[:2]
        size = context.shape[-2:]
        ez = self.embed_z(z.flatten(0, 1)).unflatten(0, (b, s))  # (B, S, hidden, h, w)
        convs = [self.head[3]] if self.shared_layers else [self.head[1], self.head[3]]
        if self.inject == "full" and ez.shape[-2:] == (1, 1):  # a per-sample bias: pixel blocks
            full = sample_mlp(context, ez.flatten(2), convs, base=y_hat[-1])
            return [full] if full_only else self._pooled(full, y_hat)
        if ez.shape[-2:] == (1, 1):  # a global z: broadcast, no interpolation needed
            h = ez + context.unsqueeze(1)
        else:
            mode = "bilinear" if self.inject == "quarter" else "nearest"
            up = F.interpolate(ez.flatten(0, 1), size=size, mode=mode)
            h = up.unflatten(0, (b, s)) + context.unsqueeze(1)  # (B, S, hidden, H/s, W/s)
        after_z = self.head[2:] if self.shared_layers else self.head
        delta = after_z(h.flatten(0, 1))  # (B*S, K, H/s, W/s)
        if self.inject == "full":
            full = y_hat[-1].unsqueeze(1) + delta.unflatten(0, (b, s))  # (B, S, K, H, W)
            return [full] if full_only else self._pooled(full, y_hat)
        targets = y_hat[-1:] if full_only else y_hat
        out = []
        for y in targets:
            d = delta
            if d.shape[-2:] != y.shape[-2:]:
                d = F.interpolate(delta, size=y.shape[-2:], mode="bilinear", align_corners=False)
            out.append(y.unsqueeze(1) + d.unflatten(0, (b, s)))  # (B, S, K, H/s, W/s)
        return out
