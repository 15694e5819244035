"""generation_net p(y | x, z): a light head that turns z into a correction of y_hat."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class GenerationNet(nn.Module):
    """p(y | x, z) at 1/4, 1/2 and full resolution.

    The decoder's stride-4 feature is projected once per image (:meth:`context`); each z sample then
    costs one small convolution stack at stride 4, whose output (a logit correction) is upsampled and
    added to the baseline's y_hat at every scale. Drawing S hypotheses therefore reruns only this
    head, batched over S.

    Args:
        feature_channels: Channels of the decoder feature at stride 4.
        latent_channels: Z.
        classes: K.
        hidden_channels: Width of the head.
    """

    def __init__(
        self, feature_channels: int, latent_channels: int, classes: int, hidden_channels: int = 64
    ) -> None:
        super().__init__()
        self.project = nn.Conv2d(feature_channels, hidden_channels, 1)
        self.embed_z = nn.Conv2d(latent_channels, hidden_channels, 1)
        self.head = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, classes, 1),
        )

    def context(self, feature_quarter: Tensor) -> Tensor:
        """Per-image part of the head, computed once: (B, D, H/4, W/4) -> (B, hidden, H/4, W/4)."""
        return self.project(feature_quarter)

    def forward(self, context: Tensor, z: Tensor, y_hat: list[Tensor]) -> list[Tensor]:
        """Logits for every z sample.

        Args:
            context: Output of :meth:`context` (B, hidden, H/4, W/4).
            z: Latent samples (B, S, Z, h, w); h = w = 1 for a global latent.
            y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).

        Returns:
            Logits at strides 4, 2, 1, each (B, S, K, H/s, W/s).
        """
        b, s = z.shape[:2]
        size = context.shape[-2:]
        ez = self.embed_z(z.flatten(0, 1))  # (B*S, hidden, h, w)
        ez = F.interpolate(ez, size=size, mode="bilinear", align_corners=False)
        h = ez.unflatten(0, (b, s)) + context.unsqueeze(1)  # (B, S, hidden, H/4, W/4)
        delta = self.head(h.flatten(0, 1))  # (B*S, K, H/4, W/4)
        out = []
        for y in y_hat:
            d = delta
            if d.shape[-2:] != y.shape[-2:]:
                d = F.interpolate(delta, size=y.shape[-2:], mode="bilinear", align_corners=False)
            out.append(y.unsqueeze(1) + d.unflatten(0, (b, s)))  # (B, S, K, H/s, W/s)
        return out
