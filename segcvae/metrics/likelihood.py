"""Conditional log-likelihood log p(y | x) per image, in nats, at full resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcvae.metrics._functional import importance_log_likelihood, monte_carlo_log_likelihood
from segcvae.models.baseline import BaselineCNN, BaselineFeatures
from segcvae.models.cvae import SegContext, SegCVAE


def label_log_likelihood(logits: Tensor, y: Tensor) -> Tensor:
    """log p(y | logits) summed over labelled pixels.

    Args:
        logits: (B, K, H, W) or (B, S, K, H, W).
        y: Labels (B, H, W); values outside [0, K) are not counted.

    Returns:
        (B,) or (B, S).
    """
    k = logits.shape[-3]
    valid = (y >= 0) & (y < k)
    idx = y.clamp(0, k - 1)
    if logits.dim() == 5:
        idx = idx.unsqueeze(1).expand(-1, logits.shape[1], -1, -1)
        valid = valid.unsqueeze(1)
    logp = logits.float().log_softmax(dim=-3).gather(-3, idx.unsqueeze(-3)).squeeze(-3)
    return (logp * valid).flatten(-2).sum(-1)


@torch.no_grad()
def conditional_log_likelihood(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_samples: int = 50,
    method: str = "is",
    chunk_size: int = 25,
    ctx: SegContext | BaselineFeatures | None = None,
) -> Tensor:
    """Estimate log p(y | x) per image.

    * :class:`BaselineCNN`: exact, ``sum_pixels log softmax(y_hat)[y]``.
    * ``method="mc"``: ``log (1/S) sum_s p(y | x, z_s)``, ``z_s ~ p(z | x, y_hat)``.
    * ``method="is"``: importance sampling with the recognition net as proposal,
      ``log (1/S) sum_s p(y | x, z_s) p(z_s | x) / q(z_s | x, y)``, ``z_s ~ q(z | x, y)``. Falls back
      to ``mc`` for a model without recognition net (GSNN).
    * A categorical latent: exact for either method, ``log sum_c p(c | x) p(y | x, c)``.

    Image features are computed once; samples go through the generation head ``chunk_size`` at a
    time, and everything is combined with log-sum-exp.

    Args:
        model: A :class:`BaselineCNN` or :class:`SegCVAE` (unwrap DDP before calling).
        x: Images (B, C, H, W).
        y: Labels (B, H, W); the ignore index (any value outside [0, K)) is skipped.
        n_samples: S (the paper uses 50).
        method: ``"is"`` or ``"mc"``.
        chunk_size: Samples per generation call (bounds memory).
        ctx: ``model.encode(x)`` if the caller already has it (it is then not recomputed).

    Returns:
        (B,) log-likelihoods in nats per image (negate for the NLL).
    """
    if method not in ("is", "mc"):
        raise ValueError(f"method must be 'is' or 'mc', got {method!r}")
    if not isinstance(model, (BaselineCNN, SegCVAE)):
        raise TypeError(f"expected BaselineCNN or SegCVAE, got {type(model).__name__}")
    ctx = model.encode(x) if ctx is None else ctx
    if isinstance(model, BaselineCNN):
        return label_log_likelihood(model.decode_mean(ctx), y)
    if model.categorical:  # exact: log sum_c p(c | x) p(y | x, c) over all codes
        log_lik = label_log_likelihood(model.generate(ctx, model.all_codes(ctx), True)[-1], y)
        return (ctx.prior.logits.log_softmax(-1).float() + log_lik).logsumexp(-1)
    use_is = method == "is" and model.recognition_net is not None
    proposal = model.posterior(ctx, y) if use_is else ctx.prior
    z = proposal.sample((n_samples,)).transpose(0, 1)  # (B, S, Z, h, w)
    log_lik = torch.cat(
        [
            label_log_likelihood(model.generate(ctx, zc, full_only=True)[-1], y)
            for zc in z.split(chunk_size, dim=1)
        ],
        dim=1,
    )  # (B, S)
    if not use_is:
        return monte_carlo_log_likelihood(log_lik)
    zt = z.transpose(0, 1)  # (S, B, ...): log_prob broadcasts over the leading sample dim
    log_p = ctx.prior.log_prob(zt).transpose(0, 1)  # (B, S)
    log_q = proposal.log_prob(zt).transpose(0, 1)
    return importance_log_likelihood(log_lik, log_p.float(), log_q.float())


def cross_entropy_sum(logits: Tensor, y: Tensor, ignore_index: int = 255) -> Tensor:
    """Summed cross-entropy per image (B,): the exact NLL of a deterministic model."""
    ce = F.cross_entropy(logits.float(), y, ignore_index=ignore_index, reduction="none")
    return ce.flatten(1).sum(1)
