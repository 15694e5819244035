"""Models: the baseline CNN and the conditional VAE built on it."""

from __future__ import annotations

from torch import nn

from segcvae.config import Config
from segcvae.models.baseline import BaselineCNN, BaselineFeatures
from segcvae.models.cvae import SegContext, SegCVAE
from segcvae.models.generation import GenerationNet
from segcvae.models.latent import GaussianNet, diagonal_gaussian
from segcvae.models.output import SegOutput
from segcvae.models.prior import PriorNet
from segcvae.models.recognition import RecognitionNet, one_hot

OBJECTIVES_WITH_RECOGNITION = ("cvae", "hybrid")


def create_model(cfg: Config, num_classes: int) -> nn.Module:
    """Build the model an experiment needs.

    ``loss.objective == "cnn"`` gives a :class:`BaselineCNN`; ``"gsnn"`` a :class:`SegCVAE` without
    recognition net; ``"cvae"`` and ``"hybrid"`` a :class:`SegCVAE` with one.

    Args:
        cfg: The experiment config (reads ``cfg.model`` and ``cfg.loss.objective``).
        num_classes: K, from the dataset.
    """
    m = cfg.model
    objective = cfg.loss.objective
    common = dict(
        encoder_name=m.encoder_name,
        encoder_depth=m.encoder_depth,
        encoder_weights=m.encoder_weights,
        decoder_channels=m.decoder_channels,
    )
    if objective == "cnn":
        return BaselineCNN(num_classes, **common)
    if objective not in ("gsnn", *OBJECTIVES_WITH_RECOGNITION):
        raise KeyError(f"unknown loss.objective {objective!r}; valid: cnn, cvae, gsnn, hybrid")
    return SegCVAE(
        num_classes,
        **common,
        latent=m.latent,
        latent_channels=m.latent_channels,
        latent_stride=m.latent_stride,
        hidden_channels=m.hidden_channels,
        recognition=objective in OBJECTIVES_WITH_RECOGNITION,
        logvar_min=m.logvar_min,
        logvar_max=m.logvar_max,
        generation=m.generation,
    )


__all__ = [
    "BaselineCNN",
    "BaselineFeatures",
    "GaussianNet",
    "GenerationNet",
    "PriorNet",
    "RecognitionNet",
    "SegCVAE",
    "SegContext",
    "SegOutput",
    "create_model",
    "diagonal_gaussian",
    "one_hot",
]
