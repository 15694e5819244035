"""Losses: pure functions (multi-scale NLL, KL, Monte Carlo NLL) and one objective per latent kind.

A family picks its objective (``ModelFamily.build_objective``, or ``segcvae.models.build_objective``
from a config): :class:`DeterministicObjective` (no latent), :class:`GaussianObjective` (a Gaussian
z), :class:`CategoricalObjective` (one of Z codes, exact sums) or :class:`MonteCarloObjective` (a
Gaussian over the logits, SSN).
"""

from __future__ import annotations

from segcvae.losses._functional import (
    kl_mean,
    monte_carlo_nll,
    multiscale_nll,
    multiscale_nll_per_sample,
    soft_cross_entropy,
    soft_targets,
)
from segcvae.losses.categorical import CategoricalObjective
from segcvae.losses.deterministic import DeterministicObjective
from segcvae.losses.gaussian import GaussianObjective
from segcvae.losses.monte_carlo import MonteCarloObjective
from segcvae.losses.objectives import LATENT_KINDS, SohnObjective, kl_weight

__all__ = [
    "LATENT_KINDS",
    "CategoricalObjective",
    "DeterministicObjective",
    "GaussianObjective",
    "MonteCarloObjective",
    "SohnObjective",
    "kl_mean",
    "kl_weight",
    "monte_carlo_nll",
    "multiscale_nll",
    "multiscale_nll_per_sample",
    "soft_cross_entropy",
    "soft_targets",
]
