"""SSN's objective: a Monte Carlo NLL over samples of a Gaussian over the logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segcvae.losses._functional import monte_carlo_nll, soft_cross_entropy, soft_targets
from segcvae.outputs import SSNOutput


class MonteCarloObjective(nn.Module):
    """SSN's loss: -log (1/M) sum_m p(y | logits_m) over the output's M logit samples.

    See :func:`segcvae.losses.monte_carlo_nll` for the normalisation (nats per labelled pixel).
    """

    def forward(self, out: SSNOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch.
            y: Labels (B, H, W) long.
            step: Unused (the same signature as the other objectives).

        Returns:
            ``loss`` (the Monte Carlo NLL per pixel), ``nll`` (the same, detached) and
            ``nll_mean`` (cross-entropy of the mean logits, for monitoring).
        """
        loss = monte_carlo_nll(out.logit_samples, y)
        t, v = soft_targets(y, out.mean.shape[1], out.mean.shape[-2:])
        with torch.no_grad():
            nll_mean = soft_cross_entropy(out.mean, t, v)
        return {"loss": loss, "nll": loss.detach(), "nll_mean": nll_mean}
