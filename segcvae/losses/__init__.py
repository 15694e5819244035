"""Losses: multi-scale NLL, KL and the objectives of every model family."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from segcvae.config import Config
from segcvae.losses._functional import (
    kl_mean,
    monte_carlo_nll,
    multiscale_nll,
    soft_cross_entropy,
    soft_targets,
)
from segcvae.losses.objectives import Objective, ProbUNetObjective, SSNObjective, kl_weight


def _sohn(cfg: Config) -> nn.Module:
    loss = cfg.loss
    return Objective(
        loss.objective,
        alpha=loss.alpha,
        scale_weights=loss.scale_weights,
        y_hat_weight=loss.y_hat_weight,
        beta=loss.beta,
        kl_warmup_steps=loss.kl_warmup_steps,
        free_bits=loss.free_bits,
        code_posterior=loss.code_posterior,
    )


def _prob_unet(cfg: Config) -> nn.Module:
    loss = cfg.loss
    return ProbUNetObjective(loss.beta, loss.kl_warmup_steps, loss.free_bits)


def _ssn(cfg: Config) -> nn.Module:
    return SSNObjective()


#: ``model.arch`` -> builder of that family's objective (the keys of ``segcvae.models.ARCHS``).
OBJECTIVES: dict[str, Callable[[Config], nn.Module]] = {
    "sohn": _sohn,
    "prob_unet": _prob_unet,
    "ssn": _ssn,
}


def build_objective(cfg: Config) -> nn.Module:
    """The objective of the model family ``cfg.model.arch``, with its ``cfg.loss`` settings.

    Sohn's family uses ``loss.objective`` (cnn, cvae, gsnn, hybrid) and its settings; the
    Probabilistic U-Net uses ``loss.beta``, ``kl_warmup_steps`` and ``free_bits``; SSN has none
    (its sample count is ``model.ssn_mc_samples``, drawn by the model).
    """
    arch = cfg.model.arch
    if arch not in OBJECTIVES:
        raise KeyError(f"unknown model.arch {arch!r}; valid: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[arch](cfg)


__all__ = [
    "OBJECTIVES",
    "Objective",
    "ProbUNetObjective",
    "SSNObjective",
    "build_objective",
    "kl_mean",
    "kl_weight",
    "monte_carlo_nll",
    "multiscale_nll",
    "soft_cross_entropy",
    "soft_targets",
]
