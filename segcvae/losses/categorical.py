"""Objectives of a categorical latent (one of Z codes per image), with exact sums over the codes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from segcvae.losses._functional import (
    kl_mean,
    multiscale_nll,
    multiscale_nll_per_sample,
    scale_targets,
)
from segcvae.losses.objectives import SohnObjective
from segcvae.outputs import SegOutput


def tempered(log_joint: Tensor, temperature: float) -> Tensor:
    """The posterior over codes, ``softmax(log_joint / T)`` over the last dim; T = 0: one-hot argmax.

    Args:
        log_joint: log p(c, y | x) (..., Z).
        temperature: T in [0, 1].
    """
    if temperature == 1.0:
        return log_joint.softmax(-1)
    if temperature == 0.0:
        return F.one_hot(log_joint.argmax(-1), log_joint.shape[-1]).to(log_joint.dtype)
    return (log_joint / temperature).softmax(-1)


class CategoricalObjective(SohnObjective):
    """Sohn et al.'s objectives for a categorical latent, with exact expectations over its codes.

    ``E_q[nll] = sum_c q(c | x, y) nll_c`` and ``E_p[nll] = sum_c p(c | x) nll_c``, where ``nll_c``
    is the multi-scale NLL of code c's logits (``out.code_logits``, every code decoded once); the
    KL is analytic. With ``code_posterior="exact"`` (the default) the CVAE term uses the exact
    posterior ``r(c) = p(c | x) p(y | x, c) / p(y | x)`` as q, so it is ``-log p(y | x)`` (per
    labelled pixel, the multi-scale NLL as the energy of a code), and recognition_net is trained to
    match r (``kl_recognition``). The decoders then share each image by responsibility, which
    breaks the symmetry between codes at once; with the recognition net's own q they start out
    identical and can stay so. The KL warm-up does not apply to the exact form.

    ``code_temperature`` T < 1 replaces r by the tempered posterior ``r_T(c) ~ r(c)^(1/T)`` (T = 0:
    one-hot on the likeliest code, hard EM): the CVAE term is then the ELBO with q = r_T,
    ``sum_c r_T(c) nll_c + KL(r_T || p(c | x))``, still an upper bound on ``-log p(y | x)``. Each
    mask trains mostly its best code, so the codes move apart instead of averaging the masks they
    share (soft responsibilities, as in EM against k-means); the prior learns how often each code
    wins.

    A set of masks per image (y (B, M, H, W), ``train.rater: all``) is scored from the one
    decoding of the codes: every term per (image, mask) pair, averaged over the real pairs (padding
    masks, all ignore index, count for nothing), so the prior learns the mean of the M exact
    posteriors, p(c | x) averaged over the image's plausible masks, in every step. Where the data
    gives the masks' probabilities (``mask_probs`` (B, M)), each image's pairs are weighted by them
    instead (each image counting once): the terms are the expectation over the image's masks.

    Args:
        kind: ``cvae``, ``gsnn`` or ``hybrid``.
        code_posterior: The q of the CVAE term: ``"exact"`` (the exact posterior over codes) or
            ``"recognition"`` (recognition_net's q).
        code_temperature: T in [0, 1] of the tempered exact posterior (1: r itself).
        **settings: As :class:`~segcvae.losses.objectives.SohnObjective`.
    """

    def __init__(
        self,
        kind: str = "cvae",
        *,
        code_posterior: str = "exact",
        code_temperature: float = 1.0,
        **settings,
    ) -> None:
        super().__init__(kind, **settings)
        if code_posterior not in ("exact", "recognition"):
            raise ValueError(f"code_posterior must be exact or recognition, got {code_posterior!r}")
        if not 0.0 <= code_temperature <= 1.0:
            raise ValueError(f"code_temperature must be in [0, 1], got {code_temperature}")
        if code_temperature != 1.0 and code_posterior != "exact":
            raise ValueError("code_temperature tempers the exact posterior: code_posterior=exact")
        self.code_posterior = code_posterior
        self.code_temperature = code_temperature

    def forward(
        self, out: SegOutput, y: Tensor, step: int = 0, mask_probs: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The model's output for a batch (with ``code_logits``).
            y: Labels (B, H, W) long, or a set of M masks per image (B, M, H, W) padded with the
                ignore index: every term is then the mean over the (image, mask) pairs, as if each
                image were repeated once per mask.
            step: Training step (for the KL warm-up of ``code_posterior="recognition"``).
            mask_probs: (B, M) the set's masks' probabilities (0 on padding), or None: every
                term is then ``mean_b sum_m p_bm term_bm`` (p renormalised over the image's
                labelled masks; the baseline's NLL pools the pixels with the same weights)
                instead of the mean over the pairs.

        Returns:
            ``loss`` and its parts: ``nll`` (the prediction NLL of the objective), ``nll_4/2/1``
            (per scale), ``nll_y_hat``, ``kl``, ``kl_weight`` and ``kl_recognition`` (with a CVAE
            term), ``nll_cvae`` / ``nll_gsnn`` where computed.
        """
        if out.code_logits is None or out.prior is None:
            raise ValueError("a categorical objective needs the output's code_logits and prior")
        npix = y.shape[-1] * y.shape[-2]
        if len(self.scale_weights) != len(out.code_logits):
            raise ValueError(f"{len(out.code_logits)} scales but {len(self.scale_weights)} weights")
        sets = y if y.dim() == 4 else y.unsqueeze(1)  # (B, M, H, W), M = 1 for one mask each
        num_classes = out.code_logits[-1].shape[-3]
        sizes = [lg.shape[-2:] for lg in out.code_logits]
        targets = scale_targets(sets.flatten(0, 1), num_classes, sizes)  # once for both terms
        labelled = ((sets >= 0) & (sets < num_classes)).flatten(2).sum(2).float()  # (B, M)
        if mask_probs is None:  # sets: the pairs' mean
            baseline = multiscale_nll(out.y_hat, y, self.scale_weights, targets)
            pair_w = (labelled > 0).float()
            pair_w = pair_w / pair_w.sum().clamp_min(1.0)  # (B, M): mean over the real pairs
        else:
            pair_w = _probability_weights(mask_probs, labelled, y)
            baseline = multiscale_nll(out.y_hat, y, self.scale_weights, targets, pair_w)
        # each (B, M, Z): mask m's multi-scale NLL under every code (the codes decoded once)
        per_scale = multiscale_nll_per_sample(out.code_logits, sets, targets)
        nll_codes = sum(w * t for w, t in zip(self.scale_weights, per_scale, strict=True))

        def mean_pairs(t: Tensor) -> Tensor:  # (B, M) -> the mean over real (image, mask) pairs
            return (pair_w * t).sum()

        terms: dict[str, Tensor] = {"nll_y_hat": baseline["nll"].detach()}
        loss = self.y_hat_weight * baseline["nll"]
        prior = out.prior.probs.unsqueeze(1)  # (B, 1, Z)
        main_weights = prior
        cvae_loss = nll_gsnn = None
        if self.uses_posterior:
            if out.posterior is None:
                raise ValueError(f"objective {self.kind!r} needs the posterior: call model(x, y)")
            q = out.posterior.probs.reshape(nll_codes.shape)  # (B, M, Z)
            if self.code_posterior == "exact":
                # The ELBO's best q is the exact posterior r(c) = p(c | x) p(y | x, c) / p(y | x),
                # which a categorical latent can compute; with q = r the ELBO is log p(y | x) itself.
                log_prior = out.prior.logits.log_softmax(-1).float().unsqueeze(1)  # (B, 1, Z)
                energy = nll_codes * labelled.clamp_min(1.0).unsqueeze(-1)
                log_joint = log_prior - energy  # log p(c, y | x), nats: (B, M, Z)
                r = tempered(log_joint.detach(), self.code_temperature)  # q: r, or r_T
                kl_pairs = (r * (r.clamp_min(1e-12).log() - log_prior)).sum(-1)  # (B, M)
                kl = mean_pairs(kl_pairs) / npix
                if self.code_temperature == 1.0:  # q = r: the ELBO is log p(y | x) itself
                    cvae_loss = -mean_pairs(log_joint.logsumexp(-1) / labelled.clamp_min(1.0))
                else:  # the ELBO with q = r_T, E_q[nll] + KL(q || p), per labelled pixel
                    cvae_loss = mean_pairs(
                        (r * nll_codes).sum(-1) + kl_pairs / labelled.clamp_min(1.0)
                    )
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
        if self.uses_prior_path:
            nll_gsnn = mean_pairs((prior * nll_codes).sum(-1))
            terms["nll_gsnn"] = nll_gsnn.detach()
        loss = self.mix(loss, cvae_loss, nll_gsnn)
        for s, t in zip(("4", "2", "1"), per_scale, strict=True):
            terms[f"nll_{s}"] = mean_pairs((main_weights * t).sum(-1)).detach()
        terms["nll"] = mean_pairs((main_weights * nll_codes).sum(-1)).detach()
        terms["loss"] = loss
        return terms


def _probability_weights(mask_probs: Tensor, labelled: Tensor, y: Tensor) -> Tensor:
    """(B, M) pair weights from the masks' probabilities: each image's labelled masks weighted by
    them (renormalised), each image with any weight counting once; the weights sum to 1."""
    if y.dim() != 4 or mask_probs.shape != y.shape[:2]:
        raise ValueError(
            f"mask_probs {tuple(mask_probs.shape)} must be (B, M) for a set of masks y (B, M, H, "
            f"W); y is {tuple(y.shape)}"
        )
    w = mask_probs.float().clamp_min(0.0) * (labelled > 0)
    per_image = w.sum(1, keepdim=True)  # (B, 1)
    w = w / per_image.clamp_min(1e-12)
    return w / (per_image > 0).sum().clamp_min(1)
