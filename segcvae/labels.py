"""Label-map helpers shared by the models, the losses and the metrics (no dependencies inside segcvae)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def one_hot(y: Tensor, num_classes: int) -> Tensor:
    """One-hot maps (B, K, H, W) float from labels (B, H, W); labels outside [0, K) become all zero."""
    valid = (y >= 0) & (y < num_classes)
    oh = F.one_hot(y.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    return (oh * valid.unsqueeze(1)).float()
