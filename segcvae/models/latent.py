"""Gaussian latent heads shared by the prior and recognition networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal


def diagonal_gaussian(mu: Tensor, logvar: Tensor) -> Independent:
    """A diagonal Gaussian whose event is everything but the batch dimension.

    Args:
        mu: Means (B, Z, h, w).
        logvar: Log-variances, same shape.

    Returns:
        ``Independent(Normal)``: ``log_prob`` and ``kl_divergence`` give one value per image (B,).
    """
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), mu.dim() - 1)


class GaussianNet(nn.Module):
    """Image features plus a label map -> diagonal Gaussian over z.

    The label map (class probabilities or one-hot, full resolution) is area-pooled to stride 4, which
    keeps it an exact class-fraction map, then brought to the latent stride by strided convolutions
    and joined with the encoder feature at that stride.

    Args:
        feature_channels: Channels of the encoder feature at ``latent_stride``.
        label_channels: Channels of the label map (the number of classes K).
        latent_channels: Z.
        latent_stride: Stride of the z map (4, 8, 16 or 32).
        hidden_channels: Width of the convolutions.
        global_latent: One z vector per image (shape (B, Z, 1, 1)) instead of a z map.
        logvar_min: Lower bound of the log-variance.
        logvar_max: Upper bound of the log-variance.
    """

    def __init__(
        self,
        feature_channels: int,
        label_channels: int,
        latent_channels: int = 32,
        latent_stride: int = 16,
        hidden_channels: int = 64,
        global_latent: bool = False,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
    ) -> None:
        super().__init__()
        n_down = int(math.log2(latent_stride)) - 2
        if latent_stride < 4 or 2 ** (n_down + 2) != latent_stride:
            raise ValueError(f"latent_stride must be a power of two >= 4, got {latent_stride}")
        if not logvar_min < logvar_max:
            raise ValueError(f"need logvar_min < logvar_max, got {logvar_min}, {logvar_max}")
        layers: list[nn.Module] = []
        c = label_channels
        for _ in range(n_down):
            layers += [nn.Conv2d(c, hidden_channels, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = hidden_channels
        self.label_net = nn.Sequential(*layers)
        self.joint = nn.Sequential(
            nn.Conv2d(feature_channels + c, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.to_params = nn.Conv2d(hidden_channels, 2 * latent_channels, 1)
        self.label_channels = label_channels
        self.global_latent = global_latent
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, features: Tensor, labels: Tensor) -> Independent:
        """Return the Gaussian over z.

        Args:
            features: Encoder feature at the latent stride (B, C, h, w).
            labels: Class probabilities or one-hot (B, K, H, W) at full resolution.

        Returns:
            A distribution with batch shape (B,) and event shape (Z, h, w) (or (Z, 1, 1) if global).
        """
        quarter = F.interpolate(labels, scale_factor=0.25, mode="area")  # (B, K, H/4, W/4)
        lab = self.label_net(quarter)
        if lab.shape[-2:] != features.shape[-2:]:
            lab = F.interpolate(lab, size=features.shape[-2:], mode="area")
        h = self.joint(torch.cat([features, lab], dim=1))
        if self.global_latent:
            h = h.mean(dim=(2, 3), keepdim=True)  # (B, hidden, 1, 1)
        mu, raw = self.to_params(h).chunk(2, dim=1)
        # Bounded log-variance: a sigmoid squashes it into [logvar_min, logvar_max], so exp() never
        # overflows and the KL stays finite however long training runs.
        logvar = self.logvar_min + (self.logvar_max - self.logvar_min) * torch.sigmoid(raw)
        return diagonal_gaussian(mu, logvar)
