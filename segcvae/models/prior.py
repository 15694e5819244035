"""prior_net p(z | x, y_hat): the paper's recurrent connection from the baseline's guess."""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Distribution

from segcvae.models.latent import LatentNet


class PriorNet(LatentNet):
    """p(z | x, y_hat): image features plus softmax(y_hat). Arguments as :class:`LatentNet`."""

    def forward(self, features: Tensor, y_hat: Tensor) -> Distribution:  # type: ignore[override]
        """Args:
        features: Encoder feature at the latent stride (B, C, h, w).
        y_hat: Full-resolution baseline logits (B, K, H, W).
        """
        return super().forward(features, y_hat.softmax(dim=1))
