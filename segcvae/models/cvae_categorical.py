"""Sohn et al.'s CVAE with a categorical z, one of Z codes per image (``model.arch:
sohn_categorical``, or ``sohn`` with ``model.latent: categorical``, the default).

For data whose ambiguity is a choice among a few answers: the codes are few, so training, the
mean prediction and the likelihood sum over all of them exactly instead of sampling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, OneHotCategorical

from segcvae.config import ConfigError
from segcvae.losses import CategoricalObjective
from segcvae.models.cvae import SegContext, SegCVAE
from segcvae.models.latent import gumbel_max_codes, systematic_draws
from segcvae.outputs import SegOutput

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


class CategoricalSegCVAE(SegCVAE):
    """Sohn et al.'s CVAE with one of Z codes per image (``loss.objective`` cvae, gsnn or hybrid,
    :class:`~segcvae.losses.CategoricalObjective`).

    prior_net and recognition_net output ``OneHotCategorical`` distributions over the codes (batch
    shape (B,), events (Z,)); a code enters generation_net as a one-hot z (Z, 1, 1).

    Args:
        classes: Number of classes K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (>= log2(latent_stride)).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        latent_channels: Z, the number of codes.
        latent_stride: Stride of the encoder feature prior_net and recognition_net read.
        hidden_channels: Width of the prior, recognition and generation nets.
        head_channels: Width of the generation net alone (0: ``hidden_channels``): what each code
            costs per pixel with ``generation="full"``.
        recognition: Build recognition_net (the cvae and hybrid objectives; with
            ``loss.code_posterior: exact`` the objective does not use it).
        in_channels: Image channels.
        generation: Where z enters: ``"quarter"``, ``"full"`` or ``"refine"`` (see
            :class:`~segcvae.models.cvae.SegCVAE`).
        refine_channels: Width of the refinement stage (``generation="refine"``).
        shared_head_layers: Hidden layers of the generation head computed once per image (0 or 1).
        code_channels: The width of the layer z enters with ``shared_head_layers=1`` (0: as
            ``hidden_channels``).
        code_sampling: How n hypotheses draw their codes: ``"systematic"`` (each code
            floor(n p) or ceil(n p) times, :func:`~segcvae.models.latent.systematic_draws`) or
            ``"independent"`` (n independent draws from p(c | x)).
    """

    name = "sohn_categorical"
    latent = "categorical"
    #: The likelihood is exact: a sum over the Z codes.
    likelihood_methods: tuple[str, ...] = ("exact",)
    #: ``forward`` takes a set of masks per image, y (B, M, H, W) (``train.rater: all``): the codes
    #: are decoded once whatever the target, so scoring M masks costs M losses, not M passes.
    scores_target_sets = True

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        latent_channels: int = 8,
        latent_stride: int = 16,
        hidden_channels: int = 32,
        head_channels: int = 16,
        recognition: bool = True,
        in_channels: int = 3,
        generation: str = "full",
        refine_channels: int = 16,
        shared_head_layers: int = 0,
        code_channels: int = 0,
        code_sampling: str = "systematic",
    ) -> None:
        if code_sampling not in ("systematic", "independent"):
            raise ValueError(
                f"code_sampling must be systematic or independent, got {code_sampling!r}"
            )
        super().__init__(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            latent_channels=latent_channels,
            latent_stride=latent_stride,
            hidden_channels=hidden_channels,
            head_channels=head_channels,
            recognition=recognition,
            in_channels=in_channels,
            generation=generation,
            refine_channels=refine_channels,
            shared_head_layers=shared_head_layers,
            code_channels=code_channels,
            latent_net_args=dict(global_latent=True, categorical=True),
        )
        self.code_sampling = code_sampling

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The shared keys (:meth:`SegCVAE.config_kwargs`) and ``model.code_sampling``."""
        m = cfg.model
        if m.latent != "categorical":
            raise ConfigError(
                f"model.latent: model.arch={m.arch} has a categorical latent, got {m.latent!r} "
                "(a Gaussian z is model.arch=sohn)"
            )
        return dict(**super().config_kwargs(cfg), code_sampling=m.code_sampling)

    @classmethod
    def build_objective(cls, cfg: Config) -> CategoricalObjective:
        """``loss.objective`` (cvae, gsnn, hybrid) as exact sums over the codes, with
        ``loss.code_posterior`` and ``loss.code_temperature``."""
        return CategoricalObjective(
            cfg.loss.objective,
            code_posterior=cfg.loss.code_posterior,
            code_temperature=cfg.loss.code_temperature,
            **cls.objective_settings(cfg),
        )

    # ------------------------------------------------------------------ the codes
    def all_codes(self, ctx: SegContext) -> Tensor:
        """Every code, for every image: (B, Z, Z, 1, 1) one-hot."""
        b = ctx.y_hat[-1].shape[0]
        eye = torch.eye(self.latent_channels, dtype=ctx.context.dtype, device=ctx.context.device)
        return eye[None, :, :, None, None].expand(b, -1, -1, -1, -1)

    def _as_z(self, codes: Tensor) -> Tensor:
        """One-hot codes (..., Z) as z maps (..., Z, 1, 1)."""
        return codes[..., None, None]

    def decode_codes(self, ctx: SegContext) -> Tensor:
        """Full-resolution logits of every code (B, Z, K, H, W).

        Inference (no autograd) computes them once per ``ctx``: the mean prediction, any number of
        hypotheses and the exact likelihood of one batch then share a single decoding of the Z
        codes.
        """
        if ctx.code_logits is not None:
            return ctx.code_logits
        logits = self.generate(ctx, self.all_codes(ctx), full_only=True)[-1]
        if not torch.is_grad_enabled():
            ctx.code_logits = logits
        return logits

    def posterior(self, ctx: SegContext, y: Tensor) -> Distribution:
        """q(c | x, y) for labels y (B, H, W), batch shape (B,), or for a set of masks per image
        (B, M, H, W): one q(c | x, y_m) per mask, batch shape (B, M)."""
        if y.dim() != 4:
            return super().posterior(ctx, y)
        if self.recognition_net is None:
            raise RuntimeError("this model has no recognition_net (it was built for gsnn)")
        b, m = y.shape[:2]
        features = ctx.features.repeat_interleave(m, dim=0)  # the features once per mask
        q = self.recognition_net(features, y.flatten(0, 1))
        return OneHotCategorical(logits=q.logits.unflatten(0, (b, m)))

    # ------------------------------------------------------------------ training
    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        """One training / evaluation pass: every code decoded once; both paths are exact
        expectations over those logits (``code_logits``).

        ``logits_prior`` / ``logits_posterior`` hold the logits of one code drawn from p / q (for
        display); the objectives use ``code_logits`` weighted by the probabilities instead. With
        a set of masks y (B, M, H, W) the posterior has batch shape (B, M), one q per mask (the
        displayed posterior logits are those of the first mask's draw).

        Args:
            x: Images (B, C, H, W).
            y: Labels (B, H, W) long, a set of masks per image (B, M, H, W) (padded with the
                ignore index), or None.
        """
        ctx = self.encode(x)
        codes = self.all_codes(ctx)  # (B, Z, Z, 1, 1)
        code_logits = self.generate(ctx, codes)  # each (B, Z, K, h, w)
        posterior = None
        if y is not None and self.recognition_net is not None:
            posterior = self.posterior(ctx, y)

        def pick(dist: Distribution) -> list[Tensor]:
            idx = dist.sample().argmax(-1)  # (B,) or (B, M)
            if idx.dim() == 2:
                idx = idx[:, 0]
            rows = torch.arange(idx.shape[0], device=idx.device)
            return [scale[rows, idx] for scale in code_logits]

        return SegOutput(
            y_hat=ctx.y_hat,
            prior=ctx.prior,
            posterior=posterior,
            logits_prior=pick(ctx.prior),
            logits_posterior=pick(posterior) if posterior is not None else None,
            code_logits=code_logits,
        )

    # ------------------------------------------------------------------ inference
    def decode_mean(self, ctx: SegContext) -> Tensor:
        """The exact predictive distribution ``log sum_c p(c | x) p(y_pixel | x, c)`` (B, K, H, W)
        (log-probabilities, which are valid logits; the mean of z is no code)."""
        logits = self.decode_codes(ctx)  # (B, Z, K, H, W)
        log_p = ctx.prior.logits.log_softmax(-1)[:, :, None, None, None]  # (B, Z, 1, 1, 1)
        return (log_p + logits.float().log_softmax(dim=2)).logsumexp(dim=1)

    def decode_samples(self, ctx: SegContext, n: int) -> Tensor:
        """n hypotheses from the prior: full-resolution logits (B, n, K, H, W).

        There are only Z distinct hypotheses: when n >= Z (or the codes are decoded already)
        every code is decoded once and the n draws pick from them, so 16 or 100 hypotheses cost
        what the mean prediction costs. Codes are drawn as ``code_sampling`` says.
        """
        if self.code_sampling == "independent":
            z = ctx.prior.sample((n,)).transpose(0, 1)  # (B, n, Z) one-hot
        else:
            z = F.one_hot(systematic_draws(ctx.prior.probs, n), self.latent_channels)
            z = z.to(ctx.prior.probs.dtype)  # (B, n, Z) one-hot
        if n < self.latent_channels and ctx.code_logits is None:  # decode only the drawn codes
            return self.generate(ctx, self._as_z(z), full_only=True)[-1]
        idx = z.argmax(-1)  # (B, n)
        codes = self.decode_codes(ctx)  # (B, Z, K, H, W)
        rows = torch.arange(codes.shape[0], device=codes.device)[:, None]
        return codes[rows, idx]  # (B, n, K, H, W)

    def noise_shape(self, height: Any, width: Any) -> tuple[Any, ...]:
        """(Z,): one Gumbel-max draw of a code per hypothesis."""
        return (self.latent_channels,)

    def decode_noise(self, ctx: SegContext, eps: Tensor) -> Tensor:
        """Hypotheses from standard-normal noise eps (S, B, Z): the Gumbel-max codes of ``Phi(eps)``
        (:func:`~segcvae.models.latent.gumbel_max_codes`), only the drawn codes decoded: logits
        (B, S, K, H, W)."""
        z = gumbel_max_codes(ctx.prior.logits, eps)  # (S, B, Z) one-hot
        return self.generate(ctx, self._as_z(z.transpose(0, 1)), full_only=True)[-1]

    def likelihood_samples(
        self, ctx: SegContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Every code once, weighted by Z p(c | x): their log-mean-exp is the exact log-sum.

        The model-side half of ``segcvae.metrics.conditional_log_likelihood``; ``n`` and
        ``chunk_size`` are accepted for the common interface.

        Args:
            ctx: ``encode(x)``.
            y: Labels (B, H, W) (unused: the sum is over the prior's codes).
            n: Samples S (unused).
            method: ``"exact"``.
            chunk_size: Unused.

        Yields:
            ``(logits (B, Z, K, H, W), log_weight (B, Z))`` once.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        log_w = ctx.prior.logits.log_softmax(-1).float() + math.log(self.latent_channels)
        yield self.decode_codes(ctx), log_w


__all__ = ["CategoricalSegCVAE"]
