"""Models: the model families behind one interface, and the networks they are made of.

Families (``model.arch``, listed by :mod:`segcvae.registry`): ``cnn`` (:class:`BaselineCNN`),
``refine_cnn`` (:class:`RefinedCNN`), Sohn et al.'s CVAE with a Gaussian z, ``sohn``
(:class:`GaussianSegCVAE`), or a categorical one, ``sohn_categorical`` (:class:`CategoricalSegCVAE`;
also ``sohn`` with ``model.latent: categorical``), both on :class:`SegCVAE`'s networks,
``prob_unet`` (:class:`ProbUNet`), ``ssn`` (:class:`SSN`), and the baselines the field compares
with, ``mc_dropout`` (:class:`MCDropoutCNN`) and ``ensemble`` (:class:`EnsembleCNN`); the third
baseline is ``cnn`` with level-set hypotheses (``eval.hypothesis_masks: level_set``). Each is a
:class:`ModelFamily`: built from the config by :func:`create_model`, trained with
:func:`build_objective`, used through ``encode(x)`` once, then ``decode_mean(ctx)`` /
``decode_samples(ctx, n)`` / ``decode_noise(ctx, eps)``.
"""

from __future__ import annotations

from torch import nn

from segcvae.config import Config, ConfigError
from segcvae.models.base import DeterministicModel, ModelFamily
from segcvae.models.baseline import BaselineCNN, BaselineFeatures, DecoderStep, unet_kwargs
from segcvae.models.cvae import SegContext, SegCVAE
from segcvae.models.cvae_categorical import CategoricalSegCVAE
from segcvae.models.cvae_gaussian import GaussianSegCVAE
from segcvae.models.ensemble import EnsembleCNN, EnsembleContext, EnsembleOutput
from segcvae.models.generation import GenerationNet
from segcvae.models.latent import (
    GaussianNet,
    LatentNet,
    bounded_logvar,
    diagonal_gaussian,
    gumbel_max_codes,
    systematic_draws,
)
from segcvae.models.mc_dropout import MCDropoutCNN, MCDropoutContext
from segcvae.models.prior import PriorNet
from segcvae.models.prob_unet import AxisAlignedGaussianNet, FComb, ProbUNet, ProbUNetContext
from segcvae.models.recognition import RecognitionNet
from segcvae.models.refine import RefineContext, RefinedCNN, RefineNet
from segcvae.models.ssn import SSN, SSNContext
from segcvae.outputs import CNNOutput, SegOutput, SSNOutput
from segcvae.registry import family_names, get_family, register_family


def family_of(cfg: Config) -> type[ModelFamily]:
    """The family class that builds the model of ``cfg``: the one ``cfg.model.arch`` names, or
    the class of it that ``cfg`` picks (:meth:`ModelFamily.family_for`: ``model.arch: sohn`` by
    ``model.latent``).

    Raises:
        ConfigError: an unknown ``model.arch`` (the message lists the families).
    """
    try:
        family = get_family(cfg.model.arch)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    return family.family_for(cfg)


def create_model(cfg: Config, num_classes: int) -> ModelFamily:
    """Build the model of an experiment: the family ``model.arch`` names, from ``cfg``.

    Args:
        cfg: The experiment config.
        num_classes: K, from the dataset.
    """
    return family_of(cfg).from_config(cfg, num_classes)


def build_objective(cfg: Config) -> nn.Module:
    """The training objective of the family ``model.arch`` names, with its ``cfg.loss`` settings:
    ``objective(model(x, y), y, step) -> {"loss": ..., ...}``."""
    return family_of(cfg).build_objective(cfg)


__all__ = [
    "SSN",
    "AxisAlignedGaussianNet",
    "BaselineCNN",
    "BaselineFeatures",
    "CNNOutput",
    "CategoricalSegCVAE",
    "DecoderStep",
    "DeterministicModel",
    "EnsembleCNN",
    "EnsembleContext",
    "EnsembleOutput",
    "FComb",
    "GaussianNet",
    "GaussianSegCVAE",
    "GenerationNet",
    "LatentNet",
    "MCDropoutCNN",
    "MCDropoutContext",
    "ModelFamily",
    "PriorNet",
    "ProbUNet",
    "ProbUNetContext",
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
    "build_objective",
    "create_model",
    "diagonal_gaussian",
    "family_names",
    "family_of",
    "get_family",
    "gumbel_max_codes",
    "register_family",
    "systematic_draws",
    "unet_kwargs",
]
