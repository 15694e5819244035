"""The optimiser and the learning-rate schedule (``train.lr``, ``lr_schedule``, ``lr_decay``)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from segcvae.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with ``train.lr`` and ``train.weight_decay`` (the paper's optimiser).

    With ``train.fused_adam`` the update runs as torch's fused kernel where the parameters' device
    has one (CPU since torch 2.4, CUDA): one pass over the weights instead of several multi-tensor
    ones (docs/RESULTS.md, "Speed"), the same arithmetic in another rounding order. Elsewhere (an
    older torch, another device) the multi-tensor Adam runs instead.
    """
    params = list(model.parameters())
    if cfg.fused_adam:
        try:
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # no fused kernel for this device or torch version
            pass
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    lr_decay: float,
    schedule: str = "inverse",
    steps: int = 1,
) -> LambdaLR:
    """The learning-rate factor per training step (stepped once per step).

    Args:
        optimizer: Its ``lr`` is the peak rate.
        lr_decay: ``"inverse"``: ``lr_t = lr / (1 + lr_decay * t)``, the paper's decay.
        schedule: ``"inverse"`` or ``"cosine"`` (``lr_t = lr * (1 + cos(pi * t / steps)) / 2``,
            annealed to 0 at the last step).
        steps: Length of the run (``"cosine"`` only).
    """
    if schedule == "cosine":
        total = max(1, steps)
        return LambdaLR(
            optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
        )
    if schedule != "inverse":
        raise ValueError(f"schedule must be 'inverse' or 'cosine', got {schedule!r}")
    return LambdaLR(optimizer, lambda t: 1.0 / (1.0 + lr_decay * t))
