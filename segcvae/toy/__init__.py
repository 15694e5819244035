"""MNIST toys the toolkit grew from: VAE, label CVAE, AAE and Sohn et al.'s quadrant completion.

Each model lives in one short file with a ``run_*`` function behind
``python -m segcvae.toy {vae,cvae,aae,quadrants} --data DIR --out DIR``; see ``docs/toy.md``.
"""

from segcvae.toy.aae import AAE, AAETrainer, run_aae
from segcvae.toy.cvae import LabelCVAE, cvae_log_likelihood, cvae_loss, run_cvae
from segcvae.toy.mnist import binarize, load_mnist, read_idx, write_idx
from segcvae.toy.priors import PRIORS, get_prior
from segcvae.toy.quadrants import (
    QuadrantCVAE,
    QuadrantNN,
    evaluate_quadrants,
    quadrant_batch,
    quadrant_log_likelihood,
    quadrant_loss,
    quadrant_mask,
    run_quadrants,
)
from segcvae.toy.vae import VAE, run_vae, vae_log_likelihood, vae_loss

__all__ = [
    "AAE",
    "AAETrainer",
    "LabelCVAE",
    "PRIORS",
    "QuadrantCVAE",
    "QuadrantNN",
    "VAE",
    "binarize",
    "quadrant_log_likelihood",
    "cvae_log_likelihood",
    "cvae_loss",
    "evaluate_quadrants",
    "get_prior",
    "load_mnist",
    "quadrant_batch",
    "quadrant_loss",
    "quadrant_mask",
    "read_idx",
    "run_aae",
    "run_cvae",
    "run_quadrants",
    "run_vae",
    "vae_log_likelihood",
    "vae_loss",
    "write_idx",
]
