"""Models: the baseline CNN, Sohn et al.'s CVAE, the Probabilistic U-Net and SSN.

Every family has the same interface: ``encode(x) -> ctx`` once per image, then
``decode_mean(ctx)`` (B, K, H, W) and ``decode_samples(ctx, n)`` (B, n, K, H, W); ``predict(x)``,
``sample(x, n)``; ``forward(x, y=None)`` returns an output dataclass of ``segcvae.outputs`` for the
family's objective; and for ``segcvae.metrics.conditional_log_likelihood`` a tuple
``likelihood_methods`` and ``likelihood_samples(ctx, y, n, method, chunk_size)``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from segcvae.config import Config
from segcvae.models.baseline import BaselineCNN, BaselineFeatures
from segcvae.models.cvae import SegContext, SegCVAE
from segcvae.models.generation import GenerationNet
from segcvae.models.latent import (
    GaussianNet,
    bounded_logvar,
    diagonal_gaussian,
    systematic_draws,
)
from segcvae.models.prior import PriorNet
from segcvae.models.prob_unet import AxisAlignedGaussianNet, FComb, ProbUNet, ProbUNetContext
from segcvae.models.recognition import RecognitionNet
from segcvae.models.refine import RefineContext, RefinedCNN, RefineNet
from segcvae.models.ssn import SSN, SSNContext
from segcvae.outputs import ProbUNetOutput, SegOutput, SSNOutput

OBJECTIVES_WITH_RECOGNITION = ("cvae", "hybrid")


def _common(cfg: Config) -> dict:
    m = cfg.model
    return dict(
        encoder_name=m.encoder_name,
        encoder_depth=m.encoder_depth,
        encoder_weights=m.encoder_weights,
        decoder_channels=m.decoder_channels,
    )


def build_sohn(cfg: Config, num_classes: int) -> nn.Module:
    """Sohn et al.: ``loss.objective`` ``cnn`` gives a :class:`BaselineCNN` (a :class:`RefinedCNN`
    with ``model.generation=refine``); ``gsnn`` a
    :class:`SegCVAE` without recognition net; ``cvae`` and ``hybrid`` a :class:`SegCVAE` with one."""
    m = cfg.model
    objective = cfg.loss.objective
    if objective == "cnn" and m.generation == "refine":
        return RefinedCNN(num_classes, **_common(cfg), refine_channels=m.refine_channels)
    if objective == "cnn":
        return BaselineCNN(num_classes, **_common(cfg))
    if objective not in ("gsnn", *OBJECTIVES_WITH_RECOGNITION):
        raise KeyError(f"unknown loss.objective {objective!r}; valid: cnn, cvae, gsnn, hybrid")
    return SegCVAE(
        num_classes,
        **_common(cfg),
        latent=m.latent,
        latent_channels=m.latent_channels,
        latent_stride=m.latent_stride,
        hidden_channels=m.hidden_channels,
        recognition=objective in OBJECTIVES_WITH_RECOGNITION,
        logvar_min=m.logvar_min,
        logvar_max=m.logvar_max,
        generation=m.generation,
        refine_channels=m.refine_channels,
        code_sampling=m.code_sampling,
    )


def build_prob_unet(cfg: Config, num_classes: int) -> nn.Module:
    """The Probabilistic U-Net (``model.prob_unet_*``, ``hidden_channels``, log-variance bounds)."""
    m = cfg.model
    return ProbUNet(
        num_classes,
        **_common(cfg),
        latent_dim=m.prob_unet_latent_dim,
        hidden_channels=m.hidden_channels,
        fcomb_layers=m.prob_unet_fcomb_layers,
        logvar_min=m.logvar_min,
        logvar_max=m.logvar_max,
    )


def build_ssn(cfg: Config, num_classes: int) -> nn.Module:
    """A Stochastic Segmentation Network (``model.ssn_*``, log-variance bounds of the diagonal)."""
    m = cfg.model
    return SSN(
        num_classes,
        **_common(cfg),
        rank=m.ssn_rank,
        mc_samples=m.ssn_mc_samples,
        epsilon=m.ssn_epsilon,
        logvar_min=m.logvar_min,
        logvar_max=m.logvar_max,
    )


#: ``model.arch`` -> builder ``(cfg, num_classes) -> model``.
ARCHS: dict[str, Callable[[Config, int], nn.Module]] = {
    "sohn": build_sohn,
    "prob_unet": build_prob_unet,
    "ssn": build_ssn,
}


def create_model(cfg: Config, num_classes: int) -> nn.Module:
    """Build the model an experiment needs: the family ``model.arch`` names (see :data:`ARCHS`).

    Args:
        cfg: The experiment config (reads ``cfg.model`` and, for Sohn's family, ``cfg.loss.objective``).
        num_classes: K, from the dataset.
    """
    arch = cfg.model.arch
    if arch not in ARCHS:
        raise KeyError(f"unknown model.arch {arch!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[arch](cfg, num_classes)


__all__ = [
    "ARCHS",
    "SSN",
    "AxisAlignedGaussianNet",
    "BaselineCNN",
    "BaselineFeatures",
    "FComb",
    "GaussianNet",
    "GenerationNet",
    "PriorNet",
    "ProbUNet",
    "ProbUNetContext",
    "ProbUNetOutput",
    "RecognitionNet",
    "RefineContext",
    "RefineNet",
    "RefinedCNN",
    "SSNContext",
    "SSNOutput",
    "SegCVAE",
    "SegContext",
    "SegOutput",
    "bounded_logvar",
    "create_model",
    "diagonal_gaussian",
    "systematic_draws",
]
