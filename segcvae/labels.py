"""Label-map helpers shared by the models, the losses and the metrics (no dependencies inside segcvae)."""

from __future__ import annotations

import torch
from torch import Tensor


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    """One-hot maps (B, K, H, W) float from labels (B, H, W); labels outside [0, K) become all zero."""
    valid = (y >= 0) & (y < num_classes)
    # scattered into float directly, in F.one_hot's (B, H, W, K) layout seen as (B, K, H, W):
    # F.one_hot builds int64 maps and checks their range, which cost 3x as long
    oh = y.new_zeros((*y.shape, num_classes), dtype=torch.float32)
    oh.scatter_(-1, y.clamp(0, num_classes - 1).unsqueeze(-1), valid.unsqueeze(-1).float())
    return oh.permute(0, 3, 1, 2)
