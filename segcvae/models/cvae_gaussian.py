"""Sohn et al.'s CVAE with a Gaussian z (``model.arch: sohn``, ``model.latent: spatial | global``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from segcvae.config import ConfigError
from segcvae.losses import GaussianObjective
from segcvae.models.cvae import SegContext, SegCVAE
from segcvae.outputs import SegOutput

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config
    from segcvae.models.base import ModelFamily

#: ``model.latent`` values of a Gaussian z.
GAUSSIAN_LATENTS = ("spatial", "global")


class GaussianSegCVAE(SegCVAE):
    """Sohn et al.'s CVAE with a diagonal Gaussian z (``model.arch: sohn``; ``loss.objective``
    cvae, gsnn or hybrid, :class:`~segcvae.losses.GaussianObjective`).

    ``model.arch: sohn`` with ``model.latent: categorical`` (the default config, and every config
    written before the two latent kinds were two families) builds
    :class:`~segcvae.models.cvae_categorical.CategoricalSegCVAE` instead (:meth:`family_for`).

    Args:
        classes: Number of classes K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (>= log2(latent_stride)).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        latent: ``"spatial"`` (a z map at ``latent_stride``, the paper's) or ``"global"`` (one z
            vector per image).
        latent_channels: Z, channels of z.
        latent_stride: Stride of the z map.
        hidden_channels: Width of the prior, recognition and generation nets.
        head_channels: Width of the generation net alone (0: ``hidden_channels``).
        recognition: Build recognition_net (needed by the cvae and hybrid objectives, not gsnn).
        logvar_min: Lower log-variance bound.
        logvar_max: Upper log-variance bound.
        in_channels: Image channels.
        generation: Where z enters: ``"quarter"``, ``"full"`` or ``"refine"`` (see
            :class:`~segcvae.models.cvae.SegCVAE`).
        refine_channels: Width of the refinement stage (``generation="refine"``).
        shared_head_layers: Hidden layers of the generation head computed once per image (0 or 1).
        code_channels: The width of the layer z enters with ``shared_head_layers=1`` (0: as
            ``hidden_channels``).
    """

    name = "sohn"
    benchmark_variants = {
        # the paper's latent: a spatial Gaussian z at stride 16, entering at stride 4
        "sohn_spatial_hybrid": [
            "loss.objective=hybrid",
            "model.latent=spatial",
            "model.generation=quarter",
            "model.hidden_channels=64",
            "model.head_channels=64",
        ],
        # the LFW refinement experiment's model: a second U-Net stage after y_hat, spatial z
        "refine_hybrid": [
            "loss.objective=hybrid",
            "model.latent=spatial",
            "model.generation=refine",
        ],
    }
    # the training step of model.arch=sohn at the defaults (the default job's model, categorical:
    # see family_for) under each of Sohn et al.'s objectives; "cvae" is the default job's
    benchmark_training_variants = {
        objective: [f"loss.objective={objective}"] for objective in ("gsnn", "cvae", "hybrid")
    }

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        latent: str = "spatial",
        latent_channels: int = 8,
        latent_stride: int = 16,
        hidden_channels: int = 32,
        head_channels: int = 16,
        recognition: bool = True,
        logvar_min: float = -10.0,
        logvar_max: float = 4.0,
        in_channels: int = 3,
        generation: str = "full",
        refine_channels: int = 16,
        shared_head_layers: int = 0,
        code_channels: int = 0,
    ) -> None:
        if latent not in GAUSSIAN_LATENTS:
            raise ValueError(f"latent must be spatial or global, got {latent!r}")
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
            latent_net_args=dict(
                global_latent=latent == "global", logvar_min=logvar_min, logvar_max=logvar_max
            ),
        )
        self.latent = latent

    @classmethod
    def family_for(cls, cfg: Config) -> type[ModelFamily]:
        """This class for ``model.latent`` spatial or global; the categorical model for
        ``categorical`` (``model.arch: sohn`` names both latent kinds)."""
        if cfg.model.latent == "categorical":
            from segcvae.models.cvae_categorical import CategoricalSegCVAE

            return CategoricalSegCVAE
        return cls

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The shared keys (:meth:`SegCVAE.config_kwargs`), ``model.latent`` and the log-variance
        bounds."""
        m = cfg.model
        if m.latent not in GAUSSIAN_LATENTS:
            raise ConfigError(
                f"model.latent: a Gaussian z (model.arch={m.arch}) is spatial or global, got "
                f"{m.latent!r}"
            )
        return dict(
            **super().config_kwargs(cfg),
            latent=m.latent,
            logvar_min=m.logvar_min,
            logvar_max=m.logvar_max,
        )

    @classmethod
    def build_objective(cls, cfg: Config) -> GaussianObjective:
        """``loss.objective`` (cvae, gsnn, hybrid) with a Gaussian KL."""
        return GaussianObjective(cfg.loss.objective, **cls.objective_settings(cfg))

    @property
    def likelihood_methods(self) -> tuple[str, ...]:  # type: ignore[override]
        """Estimators of log p(y | x), best first: importance sampling needs the recognition net."""
        return ("is", "mc") if self.recognition_net is not None else ("mc",)

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        """One training / evaluation pass.

        The prior path (GSNN) is always computed with one reparameterised sample; when ``y`` is
        given and the model has a recognition net, the posterior path (CVAE) is computed too. Both
        paths share one batched call of the generation head.

        Args:
            x: Images (B, C, H, W).
            y: Labels (B, H, W) long, or None.
        """
        ctx = self.encode(x)
        if y is not None and y.dim() != 3:
            raise ValueError(
                f"y must be (B, H, W) labels for a {self.latent} latent, got {tuple(y.shape)}"
            )
        z_prior = ctx.prior.rsample()  # (B, Z, h, w)
        posterior = None
        zs = [z_prior]
        if y is not None and self.recognition_net is not None:
            posterior = self.posterior(ctx, y)
            zs.insert(0, posterior.rsample())
        logits = self.generate(ctx, torch.stack(zs, dim=1))  # each (B, n_paths, K, h, w)
        by_path = [[scale[:, i] for scale in logits] for i in range(len(zs))]
        return SegOutput(
            y_hat=ctx.y_hat,
            prior=ctx.prior,
            posterior=posterior,
            z_prior=z_prior,
            z_posterior=zs[0] if posterior is not None else None,
            logits_prior=by_path[-1],
            logits_posterior=by_path[0] if posterior is not None else None,
        )

    def decode_mean(self, ctx: SegContext) -> Tensor:
        """Deterministic logits (B, K, H, W) with z = E[z | x]."""
        return self.generate(ctx, ctx.prior.mean.unsqueeze(1), full_only=True)[-1][:, 0]

    def decode_samples(self, ctx: SegContext, n: int) -> Tensor:
        """n hypotheses from the prior: full-resolution logits (B, n, K, H, W)."""
        z = ctx.prior.sample((n,)).transpose(0, 1)  # (B, n, Z, h, w)
        return self.generate(ctx, z, full_only=True)[-1]

    def noise_shape(self, height: Any, width: Any) -> tuple[Any, ...]:
        """(Z, H / latent_stride, W / latent_stride) for a spatial z, (Z, 1, 1) for a global one."""
        if self.latent == "global":
            return (self.latent_channels, 1, 1)
        stride = 2**self.latent_index
        return (self.latent_channels, height // stride, width // stride)

    def decode_noise(self, ctx: SegContext, eps: Tensor) -> Tensor:
        """Hypotheses z = prior.mean + prior.stddev * eps from standard-normal noise eps
        (S, B, *noise_shape): logits (B, S, K, H, W)."""
        z = ctx.prior.mean + ctx.prior.stddev * eps  # (S, B, Z, h, w)
        return self.generate(ctx, z.transpose(0, 1), full_only=True)[-1]

    def likelihood_samples(
        self, ctx: SegContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Logit samples to score ``y`` against, with their log importance weights.

        The model-side half of ``segcvae.metrics.conditional_log_likelihood``: ``"mc"`` draws
        z ~ p(z | x, y_hat) (equal weights, None); ``"is"`` draws z ~ q(z | x, y) with weights
        log p(z | x) - log q(z | x, y). All z are drawn at once, then decoded ``chunk_size`` at a time.

        Args:
            ctx: ``encode(x)``.
            y: Labels (B, H, W).
            n: Samples S.
            method: ``"is"`` or ``"mc"`` (one of :attr:`likelihood_methods`).
            chunk_size: Samples per generation call.

        Yields:
            ``(logits (B, s, K, H, W), log_weight (B, s) or None)``, the s summing to n.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        proposal = self.posterior(ctx, y) if method == "is" else ctx.prior
        z = proposal.sample((n,)).transpose(0, 1)  # (B, S, Z, h, w)
        for zc in z.split(chunk_size, dim=1):
            log_w = None
            if method == "is":
                zt = zc.transpose(0, 1)  # (s, B, ...): log_prob broadcasts over the leading dim
                log_w = (ctx.prior.log_prob(zt) - proposal.log_prob(zt)).transpose(0, 1).float()
            yield self.generate(ctx, zc, full_only=True)[-1], log_w


__all__ = ["GAUSSIAN_LATENTS", "GaussianSegCVAE"]
