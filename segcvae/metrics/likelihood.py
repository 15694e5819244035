"""Conditional log-likelihood log p(y | x) per image, in nats, at full resolution.

The estimators know no model class: every model lists the estimators it supports
(``model.likelihood_methods``, best first: ``"exact"``, ``"is"``, ``"mc"``) and yields the logits to
score the labels against with their log importance weights (``model.likelihood_samples``); this
module scores them and combines them with log-sum-exp.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from segcvae.metrics._functional import label_log_likelihoods

METHODS = ("is", "mc")
#: Samples the model draws per ``likelihood_samples`` call. A larger S is drawn in rounds, and
#: only each round's log-sum-exp per image is kept: S costs time, not memory.
SAMPLES_PER_ROUND = 256


@torch.no_grad()
def conditional_log_likelihood(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_samples: int = 50,
    method: str = "is",
    chunk_size: int = 25,
    ctx: Any = None,
) -> Tensor:
    """Estimate log p(y | x) per image.

    * A deterministic model (``likelihood_methods == ("exact",)``): exact,
      ``sum_pixels log softmax(logits)[y]``, whatever ``method`` asks for.
    * ``method="mc"``: ``log (1/S) sum_s p(y | x, s)`` over the model's own samples (z ~ p(z | x)
      for the latent models, logit samples for SSN).
    * ``method="is"``: importance sampling with the model's proposal (the recognition / posterior
      net), ``log (1/S) sum_s p(y | x, z_s) p(z_s | x) / q(z_s | x, y)``, ``z_s ~ q(z | x, y)``.
      Falls back to the model's own best estimator when it has no proposal (GSNN, SSN: ``mc``).

    Image features are computed once; samples are drawn :data:`SAMPLES_PER_ROUND` at a time and
    decoded ``chunk_size`` at a time, and everything is combined with log-sum-exp.

    With a set of R masks per image, y (B, R, H, W), every mask is scored: the exact and Monte
    Carlo estimators draw their samples once and score all R masks against them (their samples do
    not depend on the mask: R masks cost R gathers, not R passes; each mask's estimate is the
    same estimator as when it is scored alone); importance sampling draws per mask, because its
    proposal q(z | x, y) sees the mask.

    Args:
        model: Any segcvae model (unwrap DDP before calling).
        x: Images (B, C, H, W).
        y: Labels (B, H, W), or a set of masks (B, R, H, W); the ignore index (any value outside
            [0, K)) is skipped, so an all-ignore padding mask scores 0.
        n_samples: S (the paper uses 50).
        method: ``"is"`` or ``"mc"``.
        chunk_size: Samples per decoding call (bounds memory).
        ctx: ``model.encode(x)`` if the caller already has it (it is then not recomputed).

    Returns:
        (B,) log-likelihoods in nats per image (negate for the NLL), or (B, R) for a set of masks.
    """
    if method not in METHODS:
        raise ValueError(f"method must be 'is' or 'mc', got {method!r}")
    supported = model.likelihood_methods
    if method not in supported:
        method = supported[-1]  # the model's fallback: "exact" for the CNN, "mc" without a proposal
    ctx = model.encode(x) if ctx is None else ctx
    if y.dim() == 4 and method == "is":  # the proposal sees the mask: one estimate per mask
        k = model.num_classes
        labelled = ((y >= 0) & (y < k)).flatten(2).any(2)  # (B, R); padding masks: all ignore
        out = torch.zeros(y.shape[:2], device=y.device)
        for r in range(y.shape[1]):
            if labelled[:, r].any():  # a column of padding only: no proposal drawn
                ll = conditional_log_likelihood(
                    model, x, y[:, r], n_samples, method, chunk_size, ctx
                )
                out[:, r] = torch.where(labelled[:, r], ll, 0.0)  # padding scores 0, not q's noise
        return out
    ys = y if y.dim() == 4 else y.unsqueeze(1)  # (B, R, H, W)
    rounds = [n_samples]  # an exact likelihood, or few samples: one call
    if method != "exact" and n_samples > SAMPLES_PER_ROUND:
        rounds = [
            min(SAMPLES_PER_ROUND, n_samples - s) for s in range(0, n_samples, SAMPLES_PER_ROUND)
        ]
    sums, count = [], 0  # per round: log-sum-exp over its samples (B,), and the samples counted
    for n in rounds:
        log_lik, log_w = [], []
        for logits, weight in model.likelihood_samples(ctx, ys[:, 0], n, method, chunk_size):
            log_lik.append(label_log_likelihoods(logits, ys))  # (B, R, s)
            log_w.append(weight)
        ll = torch.cat(log_lik, dim=2)  # (B, R, n)
        if log_w[0] is not None:  # log weights: log p(z|x) - log q(z|x, y), or a code's prior
            ll = ll + torch.cat(log_w, dim=1).unsqueeze(1)
        sums.append(torch.logsumexp(ll, dim=2))
        count += ll.shape[2]
    total = sums[0] if len(sums) == 1 else torch.logsumexp(torch.stack(sums, dim=2), dim=2)
    total = total - math.log(count)
    return total if y.dim() == 4 else total[:, 0]


@torch.no_grad()
def negative_log_likelihoods(
    model: nn.Module, x: Tensor, y: Tensor, n_samples: int = 50, ctx: Any = None
) -> dict[str, Tensor]:
    """The NLLs the evaluation reports, per image (B,) in nats, or per mask (B, R) for a set.

    ``nll`` is the model's best estimate (importance sampling where it has a proposal, exact for a
    deterministic model, Monte Carlo otherwise) and ``nll_mc`` the Monte Carlo one; where the two
    are the same estimator it is computed once.

    Args:
        model: Any segcvae model.
        x: Images (B, C, H, W).
        y: Labels (B, H, W), or a set of masks (B, R, H, W) (see
            :func:`conditional_log_likelihood`).
        n_samples: S.
        ctx: ``model.encode(x)`` if already computed.
    """
    ctx = model.encode(x) if ctx is None else ctx
    mc = -conditional_log_likelihood(model, x, y, n_samples, "mc", ctx=ctx)
    if model.likelihood_methods[0] != "is":
        return {"nll": mc, "nll_mc": mc}
    return {"nll": -conditional_log_likelihood(model, x, y, n_samples, "is", ctx=ctx), "nll_mc": mc}
