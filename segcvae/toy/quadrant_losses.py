"""Quadrant completion's training terms and likelihood estimators (Sohn, Lee & Yan 2015, 5.1).

The negative conditional log-likelihood of the missing pixels (nats per image) is exact for the
baseline, a Monte Carlo average over the prior for the GSNN and importance-sampled with the
recognition net for the CVAE / hybrid (``segcvae.metrics._functional``, the estimators of the
segmentation toolkit).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import kl_divergence

from segcvae.metrics._functional import importance_log_likelihood, monte_carlo_log_likelihood
from segcvae.toy.layers import bernoulli_log_prob
from segcvae.toy.quadrant_models import QuadrantCVAE, QuadrantNN, quadrant_batch

OBJECTIVES = ("cnn", "gsnn", "cvae", "hybrid")
# How each model's conditional log-likelihood is estimated
ESTIMATORS = {"cnn": "exact", "gsnn": "mc", "cvae": "is", "hybrid": "is"}
# the baseline's name before it was "cnn" everywhere, still accepted
_OLD_NAMES = {"nn": "cnn"}


def quadrant_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    missing: Tensor,
    objective: str,
    alpha: float = 0.5,
    kl_weight: float = 1.0,
) -> dict[str, Tensor]:
    """Training terms (nats per image, lower is better) for one batch.

    Args:
        model: ``QuadrantNN`` for ``"cnn"``, else ``QuadrantCVAE``.
        x: (B, 784) inputs, y: (B, 784) complete digits, missing: (B, 784) pixels to predict.
        objective: ``"cnn"`` (the deterministic baseline), ``"gsnn"``, ``"cvae"`` or ``"hybrid"``
            (``alpha * cvae + (1 - alpha) * gsnn``).
        alpha: Hybrid weight.
        kl_weight: Factor on the KL term in ``loss`` (a warm-up from 0 to 1 keeps the decoder from
            learning to ignore z early on); the reported ``kl`` is unweighted.

    Returns:
        ``{"loss", "nll"}`` plus ``"kl"`` and ``"nll_prior"`` where they apply; ``nll`` is the
        reconstruction term of the objective's main path.
    """
    objective = _OLD_NAMES.get(objective, objective)
    if objective not in OBJECTIVES:
        raise KeyError(f"unknown objective {objective!r}; valid: {list(OBJECTIVES)}")
    if objective == "cnn":
        nll = -bernoulli_log_prob(model(x), y, missing).mean()
        return {"loss": nll, "nll": nll}
    out = model(x, y if objective != "gsnn" else None)
    nll_prior = -bernoulli_log_prob(out.logits_prior, y, missing).mean()
    if objective == "gsnn":
        return {"loss": nll_prior, "nll": nll_prior}
    nll = -bernoulli_log_prob(out.logits_posterior, y, missing).mean()
    kl = kl_divergence(out.posterior, out.prior).sum(-1).mean()
    cvae = nll + kl_weight * kl
    loss = cvae if objective == "cvae" else alpha * cvae + (1 - alpha) * nll_prior
    return {"loss": loss, "nll": nll, "kl": kl, "nll_prior": nll_prior}


@torch.no_grad()
def quadrant_log_likelihood(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    missing: Tensor,
    n_samples: int = 100,
    method: str = "is",
) -> Tensor:
    """log p(y_missing | x) per image, in nats.

    Args:
        model: ``QuadrantNN`` (exact, ``method`` ignored) or ``QuadrantCVAE``.
        x, y, missing: (B, 784) as in :func:`quadrant_loss`.
        n_samples: S, the number of z samples.
        method: ``"is"`` (z ~ q(z|x, y), needs recognition_net), ``"mc"`` (z ~ p(z|x, y_hat)) or
            ``"elbo"`` (the lower bound E_q[log p(y|x,z)] - KL(q||p), averaged over S samples).

    Returns:
        (B,) log-likelihoods.
    """
    if isinstance(model, QuadrantNN):
        return bernoulli_log_prob(model(x), y, missing)
    if method == "mc":
        y_hat, _, prior, context = model.context(x)
        z = prior.sample((n_samples,))  # (S, B, d)
        log_lik = bernoulli_log_prob(model.generate(y_hat, context, z), y, missing)  # (S, B)
        return monte_carlo_log_likelihood(log_lik, dim=0)
    if method not in ("is", "elbo"):
        raise KeyError(f"unknown method {method!r}; valid: ['elbo', 'is', 'mc']")
    return _posterior_estimates(model, x, y, missing, n_samples)[method]


def _posterior_estimates(
    model: QuadrantCVAE, x: Tensor, y: Tensor, missing: Tensor, n_samples: int
) -> dict[str, Tensor]:
    """The importance-sampled log-likelihood and the ELBO from the same S posterior samples."""
    y_hat, _, prior, context = model.context(x)
    posterior = model.posterior(x, y)
    z = posterior.sample((n_samples,))  # (S, B, d)
    log_lik = bernoulli_log_prob(model.generate(y_hat, context, z), y, missing)  # (S, B)
    log_prior = prior.log_prob(z).sum(-1)
    log_proposal = posterior.log_prob(z).sum(-1)
    return {
        "is": importance_log_likelihood(log_lik, log_prior, log_proposal, dim=0),
        "elbo": log_lik.mean(0) - kl_divergence(posterior, prior).sum(-1),
    }


@torch.no_grad()
def evaluate_quadrants(
    model: nn.Module,
    images: Tensor,
    method: str,
    n_samples: int = 100,
    batch_size: int = 100,
) -> dict[str, dict[int, float]]:
    """Mean negative conditional log-likelihood of the missing pixels for 1 / 2 / 3 quadrants.

    Args:
        model: ``QuadrantNN`` (exact) or ``QuadrantCVAE``.
        images: (N, 784) binarised test digits.
        method: ``"exact"`` (the baseline), ``"mc"`` (GSNN) or ``"is"`` (CVAE / hybrid; the ELBO from the
            same samples is returned as well).
        n_samples: S.
        batch_size: Digits per forward pass (memory grows as S * batch_size).

    Returns:
        ``{estimate: {num_visible: nats per image}}``, e.g. ``{"is": {1: 63.2, ...}, "elbo": ...}``.
    """
    results: dict[str, dict[int, float]] = {}
    for k in (1, 2, 3):
        sums: dict[str, float] = {}
        for y in images.split(batch_size):
            x, missing = quadrant_batch(y, torch.full((len(y),), k, dtype=torch.long))
            if method == "exact":
                estimates = {"exact": quadrant_log_likelihood(model, x, y, missing)}
            elif method == "mc":
                estimates = {"mc": quadrant_log_likelihood(model, x, y, missing, n_samples, "mc")}
            elif method == "is":
                estimates = _posterior_estimates(model, x, y, missing, n_samples)
            else:
                raise KeyError(f"unknown method {method!r}; valid: ['exact', 'is', 'mc']")
            for name, ll in estimates.items():
                sums[name] = sums.get(name, 0.0) - ll.sum().item()
        for name, total in sums.items():
            results.setdefault(name, {})[k] = round(total / len(images), 3)
    return results
