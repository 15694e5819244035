"""Losses: multi-scale NLL, KL and the cnn / cvae / gsnn / hybrid objectives."""

from __future__ import annotations

from segcvae.config import LossConfig
from segcvae.losses._functional import (
    kl_mean,
    multiscale_nll,
    soft_cross_entropy,
    soft_targets,
)
from segcvae.losses.objectives import Objective


def build_objective(cfg: LossConfig) -> Objective:
    """The objective named by ``cfg.objective`` with its settings."""
    return Objective(
        cfg.objective,
        alpha=cfg.alpha,
        scale_weights=cfg.scale_weights,
        y_hat_weight=cfg.y_hat_weight,
        beta=cfg.beta,
        kl_warmup_steps=cfg.kl_warmup_steps,
        free_bits=cfg.free_bits,
    )


__all__ = [
    "Objective",
    "build_objective",
    "kl_mean",
    "multiscale_nll",
    "soft_cross_entropy",
    "soft_targets",
]
