"""Training objectives: cnn, cvae (-ELBO), gsnn and hybrid, as dicts of named terms.

Every term is in nats per full-resolution pixel so that image size does not change the balance of
likelihood and KL: ``kl`` is the per-image KL divided by H*W. Lower is better for every term.
"""

from __future__ import annotations

from torch import Tensor, nn

from segcvae.losses._functional import kl_mean, multiscale_nll
from segcvae.models.output import SegOutput


class Objective(nn.Module):
    """Turn a :class:`SegOutput` into a dict of loss terms.

    Args:
        kind: ``cnn``, ``cvae``, ``gsnn`` or ``hybrid``.
        alpha: Hybrid weight: ``alpha * cvae + (1 - alpha) * gsnn``.
        scale_weights: NLL weight of the 1/4, 1/2 and 1 scales.
        y_hat_weight: Weight of the baseline's own NLL (not used by ``cnn``, where y_hat is the output).
        beta: KL weight after warm-up.
        kl_warmup_steps: Steps over which the KL weight rises linearly from 0 to ``beta``.
        free_bits: Nats per latent channel below which KL is free.
    """

    KINDS = ("cnn", "cvae", "gsnn", "hybrid")

    def __init__(
        self,
        kind: str,
        alpha: float = 0.5,
        scale_weights: tuple[float, ...] | list[float] = (1.0, 1.0, 1.0),
        y_hat_weight: float = 0.5,
        beta: float = 1.0,
        kl_warmup_steps: int = 300,
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise KeyError(f"unknown objective {kind!r}; valid: {', '.join(self.KINDS)}")
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
        if self.kl_warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup_steps)

    def forward(self, out: SegOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch.
            y: Labels (B, H, W) long.
            step: Training step (for the KL warm-up).

        Returns:
            ``loss`` (to minimise) and its parts: ``nll`` (the prediction NLL of the objective),
            ``nll_4/2/1`` (per scale, of that prediction), and for latent objectives ``kl``,
            ``nll_y_hat``, and ``nll_cvae`` / ``nll_gsnn`` where computed.
        """
        baseline = multiscale_nll(out.y_hat, y, self.scale_weights)
        if self.kind == "cnn":
            return {"loss": baseline["nll"], **baseline}
        npix = y.shape[-1] * y.shape[-2]
        terms: dict[str, Tensor] = {"nll_y_hat": baseline["nll"].detach()}
        loss = self.y_hat_weight * baseline["nll"]
        cvae = gsnn = None
        if self.kind in ("cvae", "hybrid"):
            if out.posterior is None or out.logits_posterior is None:
                raise ValueError(f"objective {self.kind!r} needs the posterior: call model(x, y)")
            cvae = multiscale_nll(out.logits_posterior, y, self.scale_weights)
            kl = kl_mean(out.posterior, out.prior, self.free_bits) / npix
            terms["kl"] = kl.detach()
            terms["kl_weight"] = kl.new_tensor(self.kl_weight(step))
            terms["nll_cvae"] = cvae["nll"].detach()
            cvae_loss = cvae["nll"] + self.kl_weight(step) * kl
        if self.kind in ("gsnn", "hybrid"):
            gsnn = multiscale_nll(out.logits_prior, y, self.scale_weights)
            terms["nll_gsnn"] = gsnn["nll"].detach()
        if self.kind == "cvae":
            loss = loss + cvae_loss
        elif self.kind == "gsnn":
            loss = loss + gsnn["nll"]
        else:
            loss = loss + self.alpha * cvae_loss + (1.0 - self.alpha) * gsnn["nll"]
        main = cvae if cvae is not None else gsnn
        terms.update({k: v.detach() for k, v in main.items()})
        terms["loss"] = loss
        return terms
