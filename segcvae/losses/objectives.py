"""Training objectives, as dicts of named terms: Sohn et al.'s cnn, cvae (-ELBO), gsnn and hybrid;
the Probabilistic U-Net's ELBO; SSN's Monte Carlo NLL.

Every term is in nats per full-resolution pixel so that image size does not change the balance of
likelihood and KL: ``kl`` is the per-image KL divided by H*W. Lower is better for every term.
The objectives read the output dataclasses of ``segcvae.outputs``, never the model classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segcvae.losses._functional import (
    kl_mean,
    monte_carlo_nll,
    multiscale_nll,
    multiscale_nll_per_sample,
    soft_cross_entropy,
    soft_targets,
)
from segcvae.outputs import ProbUNetOutput, SegOutput, SSNOutput


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """beta, ramped linearly from 0 over ``warmup_steps`` (constant when 0)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


class Objective(nn.Module):
    """Turn a :class:`SegOutput` into a dict of loss terms.

    Args:
        kind: ``cnn``, ``cvae``, ``gsnn`` or ``hybrid``.
        alpha: Hybrid weight: ``alpha * cvae + (1 - alpha) * gsnn``.
        scale_weights: NLL weight of the 1/4, 1/2 and 1 scales.
        y_hat_weight: Weight of the baseline's own NLL (used by ``cnn`` only with a second stage,
            ``out.logits_prior`` of a ``RefinedCNN``; otherwise y_hat is the output).
        beta: KL weight after warm-up.
        kl_warmup_steps: Steps over which the KL weight rises linearly from 0 to ``beta``.
        free_bits: Nats per latent channel below which KL is free.
        code_posterior: For a categorical latent, the q of the CVAE term: ``"exact"`` (the exact
            posterior over codes) or ``"recognition"`` (recognition_net's q).
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
        code_posterior: str = "exact",
    ) -> None:
        super().__init__()
        if code_posterior not in ("exact", "recognition"):
            raise ValueError(f"code_posterior must be exact or recognition, got {code_posterior!r}")
        self.code_posterior = code_posterior
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
        return kl_weight(step, self.beta, self.kl_warmup_steps)

    def forward(self, out: SegOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch.
            y: Labels (B, H, W) long; for a categorical latent also a set of M masks per image
                (B, M, H, W), padded with the ignore index (``train.rater: all``): every term is
                then the mean over the (image, mask) pairs, as if each image were repeated once
                per mask.
            step: Training step (for the KL warm-up).

        Returns:
            ``loss`` (to minimise) and its parts: ``nll`` (the prediction NLL of the objective),
            ``nll_4/2/1`` (per scale, of that prediction), and for latent objectives ``kl``,
            ``nll_y_hat``, and ``nll_cvae`` / ``nll_gsnn`` where computed.
        """
        if y.dim() == 4 and out.code_logits is None:
            raise ValueError(
                f"a set of masks per image {tuple(y.shape)} needs a categorical latent's "
                "code_logits; repeat the images instead (segcvae.engine.data.expand_raters)"
            )
        baseline = multiscale_nll(out.y_hat, y, self.scale_weights)  # sets: the pairs' mean
        if self.kind == "cnn" and out.logits_prior is None:
            return {"loss": baseline["nll"], **baseline}
        if self.kind == "cnn":  # a deterministic second stage (RefinedCNN): its NLL plus y_hat's
            refined = multiscale_nll(out.logits_prior, y, self.scale_weights)
            loss = refined["nll"] + self.y_hat_weight * baseline["nll"]
            terms = {k: v.detach() for k, v in refined.items()}
            return {**terms, "nll_y_hat": baseline["nll"].detach(), "loss": loss}
        if out.code_logits is not None:
            return self._categorical(out, y, step, baseline)
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

    def _categorical(
        self, out: SegOutput, y: Tensor, step: int, baseline: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """The same objectives for a categorical latent, with exact expectations over its codes.

        ``E_q[nll] = sum_c q(c | x, y) nll_c`` and ``E_p[nll] = sum_c p(c | x) nll_c``, where
        ``nll_c`` is the multi-scale NLL of code c's logits; the KL is analytic. With
        ``code_posterior="exact"`` (the default) the CVAE term uses the exact posterior
        ``r(c) = p(c | x) p(y | x, c) / p(y | x)`` as q, so it is ``-log p(y | x)`` (per labelled
        pixel, the multi-scale NLL as the energy of a code), and recognition_net is trained to
        match r (``kl_recognition``). The decoders then share each image by responsibility, which
        breaks the symmetry between codes at once; with the recognition net's own q they start
        out identical and can stay so. The KL warm-up does not apply to the exact form.

        With a set of masks per image (y (B, M, H, W)) every term is computed per (image, mask)
        pair from the one decoding of the codes and averaged over the real pairs (padding masks,
        all ignore index, count for nothing): the prior then learns the mean of the M exact
        posteriors, p(c | x) averaged over the image's plausible masks, in every step.
        """
        assert out.code_logits is not None and out.prior is not None
        npix = y.shape[-1] * y.shape[-2]
        if len(self.scale_weights) != len(out.code_logits):
            raise ValueError(f"{len(out.code_logits)} scales but {len(self.scale_weights)} weights")
        sets = y if y.dim() == 4 else y.unsqueeze(1)  # (B, M, H, W), M = 1 for one mask each
        num_classes = out.code_logits[-1].shape[-3]
        labelled = ((sets >= 0) & (sets < num_classes)).flatten(2).sum(2).float()  # (B, M)
        pair_w = (labelled > 0).float()
        pair_w = pair_w / pair_w.sum().clamp_min(1.0)  # (B, M): mean over the real pairs
        # each (B, M, Z): mask m's multi-scale NLL under every code (the codes decoded once)
        per_scale = multiscale_nll_per_sample(out.code_logits, sets)
        nll_codes = sum(w * t for w, t in zip(self.scale_weights, per_scale, strict=True))

        def mean_pairs(t: Tensor) -> Tensor:  # (B, M) -> the mean over real (image, mask) pairs
            return (pair_w * t).sum()

        terms: dict[str, Tensor] = {"nll_y_hat": baseline["nll"].detach()}
        loss = self.y_hat_weight * baseline["nll"]
        prior = out.prior.probs.unsqueeze(1)  # (B, 1, Z)
        main_weights = prior
        if self.kind in ("cvae", "hybrid"):
            if out.posterior is None:
                raise ValueError(f"objective {self.kind!r} needs the posterior: call model(x, y)")
            q = out.posterior.probs.reshape(nll_codes.shape)  # (B, M, Z)
            if self.code_posterior == "exact":
                # The ELBO's best q is the exact posterior r(c) = p(c | x) p(y | x, c) / p(y | x),
                # which a categorical latent can compute; with q = r the ELBO is log p(y | x) itself.
                log_prior = out.prior.logits.log_softmax(-1).float().unsqueeze(1)  # (B, 1, Z)
                energy = nll_codes * labelled.clamp_min(1.0).unsqueeze(-1)
                log_joint = log_prior - energy  # log p(c, y | x), nats: (B, M, Z)
                r = log_joint.softmax(-1).detach()
                cvae_loss = -mean_pairs(log_joint.logsumexp(-1) / labelled.clamp_min(1.0))
                kl = mean_pairs((r * (r.clamp_min(1e-12).log() - log_prior)).sum(-1)) / npix
                # recognition_net q learns r (so it stays a usable proposal), nothing else
                distill = mean_pairs(
                    (r * (r.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(-1)
                )
                cvae_loss = cvae_loss + distill / npix
                terms["kl_recognition"] = (distill / npix).detach()
                weights = r
            else:
                if y.dim() == 4:
                    raise ValueError("a set of masks per image needs loss.code_posterior=exact")
                kl = kl_mean(out.posterior, out.prior, self.free_bits) / npix
                cvae_loss = mean_pairs((q * nll_codes).sum(-1)) + self.kl_weight(step) * kl
                weights = q
            nll_cvae = mean_pairs((weights * nll_codes).sum(-1))
            terms.update(kl=kl.detach(), kl_weight=kl.new_tensor(self.kl_weight(step)))
            terms["nll_cvae"] = nll_cvae.detach()
            main_weights = weights
        if self.kind in ("gsnn", "hybrid"):
            nll_gsnn = mean_pairs((prior * nll_codes).sum(-1))
            terms["nll_gsnn"] = nll_gsnn.detach()
        if self.kind == "cvae":
            loss = loss + cvae_loss
        elif self.kind == "gsnn":
            loss = loss + nll_gsnn
        else:
            loss = loss + self.alpha * cvae_loss + (1.0 - self.alpha) * nll_gsnn
        for s, t in zip(("4", "2", "1"), per_scale, strict=True):
            terms[f"nll_{s}"] = mean_pairs((main_weights * t).sum(-1)).detach()
        terms["nll"] = mean_pairs((main_weights * nll_codes).sum(-1)).detach()
        terms["loss"] = loss
        return terms


class ProbUNetObjective(nn.Module):
    """The Probabilistic U-Net's loss: cross-entropy with z ~ q(z | x, y) plus beta * KL(q || p).

    The cross-entropy is the mean over labelled pixels and the analytic KL is divided by H*W, so
    the loss is the paper's (summed cross-entropy + beta * KL) divided by the number of pixels.

    Args:
        beta: KL weight after warm-up (the paper: 1).
        kl_warmup_steps: Steps over which the KL weight rises linearly from 0 to ``beta``.
        free_bits: Nats per latent dimension below which KL is free.
    """

    def __init__(self, beta: float = 1.0, kl_warmup_steps: int = 0, free_bits: float = 0.0) -> None:
        super().__init__()
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        self.free_bits = free_bits

    def forward(self, out: ProbUNetOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch, computed with labels (``model(x, y)``).
            y: Labels (B, H, W) long.
            step: Training step (for the KL warm-up).

        Returns:
            ``loss``, ``nll`` (cross-entropy per pixel with z ~ q), ``kl`` (per pixel),
            ``kl_weight``.
        """
        if out.posterior is None:
            raise ValueError("the prob_unet objective needs the posterior: call model(x, y)")
        t, v = soft_targets(y, out.logits.shape[1], out.logits.shape[-2:])
        nll = soft_cross_entropy(out.logits, t, v)
        kl = kl_mean(out.posterior, out.prior, self.free_bits) / (y.shape[-1] * y.shape[-2])
        w = kl_weight(step, self.beta, self.kl_warmup_steps)
        return {
            "loss": nll + w * kl,
            "nll": nll.detach(),
            "kl": kl.detach(),
            "kl_weight": kl.new_tensor(w),
        }


class SSNObjective(nn.Module):
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
