"""recognition_net q(z | x, y): sees the ground truth, used in training and for likelihoods."""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution

from segcvae.labels import one_hot
from segcvae.models.latent import LatentNet


class RecognitionNet(LatentNet):
    """q(z | x, y): image features plus the one-hot ground truth. Arguments as :class:`LatentNet`."""

    def forward(self, features: Tensor, y: Tensor) -> Distribution:  # type: ignore[override]
        """Args:
        features: Encoder feature at the latent stride (B, C, h, w).
        y: Labels (B, H, W) long; the ignore value (any label outside [0, K)) is all-zero.
        """
        return super().forward(features, one_hot(y, self.label_channels).to(features.dtype))
