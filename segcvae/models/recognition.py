"""recognition_net q(z | x, y): sees the ground truth, used in training and for likelihoods."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution

from segcvae.models.latent import GaussianNet


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    """One-hot maps (B, K, H, W) float from labels (B, H, W); labels outside [0, K) become all zero."""
    valid = (y >= 0) & (y < num_classes)
    oh = F.one_hot(y.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return (oh * valid.unsqueeze(1)).float()


class RecognitionNet(GaussianNet):
    """q(z | x, y): image features plus the one-hot ground truth. Arguments as :class:`GaussianNet`."""

    def forward(self, features: Tensor, y: Tensor) -> Distribution:  # type: ignore[override]
        """Args:
        features: Encoder feature at the latent stride (B, C, h, w).
        y: Labels (B, H, W) long; the ignore value (any label outside [0, K)) is all-zero.
        """
        return super().forward(features, one_hot(y, self.label_channels).to(features.dtype))
