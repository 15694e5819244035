"""What the objectives of every latent kind share: the KL warm-up and Sohn et al.'s three
objectives (cvae, gsnn, hybrid) as a mix of a CVAE and a GSNN term.

Every term is in nats per full-resolution pixel, so that image size does not change the balance of
likelihood and KL: ``kl`` is the per-image KL divided by H*W. Lower is better for every term. The
objectives read the output dataclasses of ``segcvae.outputs``, never the model classes. Which
objective a model trains with is its family's choice (``ModelFamily.build_objective``):

* :class:`~segcvae.losses.deterministic.DeterministicObjective`: no latent (the CNN);
* :class:`~segcvae.losses.gaussian.GaussianObjective`: a Gaussian z (Sohn et al.'s spatial or
  global latent, the Probabilistic U-Net);
* :class:`~segcvae.losses.categorical.CategoricalObjective`: one of Z codes, with exact sums;
* :class:`~segcvae.losses.monte_carlo.MonteCarloObjective`: a Gaussian over the logits (SSN).
"""

from __future__ import annotations

from torch import Tensor, nn

#: Sohn et al.'s objectives with a latent (``loss.objective``; ``cnn`` is the family without one).
LATENT_KINDS = ("cvae", "gsnn", "hybrid")


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """beta, ramped linearly from 0 over ``warmup_steps`` (constant when 0)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


class SohnObjective(nn.Module):
    """The settings Sohn et al.'s objectives share, and how the CVAE and GSNN terms are mixed.

    Args:
        kind: ``cvae`` (-ELBO), ``gsnn`` (the NLL with z from the prior) or ``hybrid``.
        alpha: Hybrid weight: ``alpha * cvae + (1 - alpha) * gsnn``.
        scale_weights: NLL weight of each prediction scale (1/4, 1/2, 1).
        y_hat_weight: Weight of the baseline's own NLL (keeps y_hat an initial guess).
        beta: KL weight after warm-up.
        kl_warmup_steps: Steps over which the KL weight rises linearly from 0 to ``beta``.
        free_bits: Nats per latent channel below which KL is free.
    """

    def __init__(
        self,
        kind: str = "cvae",
        *,
        alpha: float = 0.5,
        scale_weights: tuple[float, ...] | list[float] = (1.0, 1.0, 1.0),
        y_hat_weight: float = 0.5,
        beta: float = 1.0,
        kl_warmup_steps: int = 300,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in LATENT_KINDS:
            raise KeyError(f"unknown objective {kind!r}; valid: {', '.join(LATENT_KINDS)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.kind = kind
        self.alpha = alpha
        self.scale_weights = list(scale_weights)
        self.y_hat_weight = y_hat_weight
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        self.free_bits = free_bits

    def kl_weight(self, step: int) -> float:
        """beta, ramped linearly over the warm-up."""
        return kl_weight(step, self.beta, self.kl_warmup_steps)

    @property
    def uses_posterior(self) -> bool:
        """Whether the objective has a CVAE term (and so needs q(z | x, y))."""
        return self.kind in ("cvae", "hybrid")

    @property
    def uses_prior_path(self) -> bool:
        """Whether the objective has a GSNN term."""
        return self.kind in ("gsnn", "hybrid")

    def mix(self, base: Tensor | None, cvae: Tensor | None, gsnn: Tensor | None) -> Tensor:
        """``base`` (the baseline's weighted NLL, or None) plus the cvae term, the gsnn term, or
        ``alpha * cvae + (1 - alpha) * gsnn``, as the kind says."""
        if self.kind == "cvae":
            return cvae if base is None else base + cvae
        if self.kind == "gsnn":
            return gsnn if base is None else base + gsnn
        mixed = self.alpha * cvae
        return (mixed if base is None else base + mixed) + (1.0 - self.alpha) * gsnn
