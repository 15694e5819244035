"""Objectives of a Gaussian latent z: Sohn et al.'s cvae (-ELBO), gsnn and hybrid, and the
Probabilistic U-Net's ELBO (the cvae objective at one scale, without a baseline prediction)."""

from __future__ import annotations

from torch import Tensor

from segcvae.losses._functional import kl_mean, multiscale_nll
from segcvae.losses.objectives import SohnObjective
from segcvae.outputs import SegOutput


class GaussianObjective(SohnObjective):
    """Turn a :class:`~segcvae.outputs.SegOutput` with a Gaussian latent into loss terms.

    * ``cvae``: ``NLL(y | x, z ~ q) + kl_weight * KL(q || p) / (H W)``, the negative ELBO;
    * ``gsnn``: ``NLL(y | x, z ~ p)``;
    * ``hybrid``: ``alpha * cvae + (1 - alpha) * gsnn``;

    each plus ``y_hat_weight`` times the baseline's own NLL when the output has a y_hat. The NLLs
    are multi-scale (``scale_weights``, one per scale of the output's logits) and the KL is
    analytic. Arguments as :class:`~segcvae.losses.objectives.SohnObjective`.
    """

    def forward(self, out: SegOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch (``model(x, y)`` for the cvae and hybrid terms).
            y: Labels (B, H, W) long.
            step: Training step (for the KL warm-up).

        Returns:
            ``loss`` (to minimise) and its parts: ``nll`` (the prediction NLL of the objective),
            ``nll_4/2/1`` (per scale, of that prediction), ``kl`` and ``kl_weight`` (with a CVAE
            term), ``nll_cvae`` / ``nll_gsnn`` where computed, and ``nll_y_hat`` with a baseline.
        """
        if y.dim() != 3:
            raise ValueError(
                f"a Gaussian latent scores one mask per image, y (B, H, W); got {tuple(y.shape)} "
                "(repeat the images instead: segcvae.engine.targets.expand_raters)"
            )
        terms: dict[str, Tensor] = {}
        loss = None
        if out.y_hat:
            baseline = multiscale_nll(out.y_hat, y, self.scale_weights)
            terms["nll_y_hat"] = baseline["nll"].detach()
            loss = self.y_hat_weight * baseline["nll"]
        cvae = gsnn = cvae_loss = None
        if self.uses_posterior:
            if out.posterior is None or out.logits_posterior is None:
                raise ValueError(f"objective {self.kind!r} needs the posterior: call model(x, y)")
            cvae = multiscale_nll(out.logits_posterior, y, self.scale_weights)
            npix = y.shape[-1] * y.shape[-2]
            kl = kl_mean(out.posterior, out.prior, self.free_bits) / npix
            terms["kl"] = kl.detach()
            terms["kl_weight"] = kl.new_tensor(self.kl_weight(step))
            terms["nll_cvae"] = cvae["nll"].detach()
            cvae_loss = cvae["nll"] + self.kl_weight(step) * kl
        if self.uses_prior_path:
            if out.logits_prior is None:
                raise ValueError(f"objective {self.kind!r} needs the prior path's logits")
            gsnn = multiscale_nll(out.logits_prior, y, self.scale_weights)
            terms["nll_gsnn"] = gsnn["nll"].detach()
        loss = self.mix(loss, cvae_loss, gsnn["nll"] if gsnn is not None else None)
        main = cvae if cvae is not None else gsnn
        terms.update({k: v.detach() for k, v in main.items()})
        terms["loss"] = loss
        return terms
