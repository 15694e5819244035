"""SegCVAE: baseline CNN -> y_hat; prior_net, recognition_net, generation_net (Sohn et al. 2015)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, OneHotCategorical

from segcvae.config import ConfigError
from segcvae.losses import CategoricalObjective, GaussianObjective, SohnObjective
from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.models.generation import GenerationNet
from segcvae.models.latent import gumbel_max_codes, systematic_draws
from segcvae.models.prior import PriorNet
from segcvae.models.recognition import RecognitionNet
from segcvae.models.refine import RefineContext, RefineNet
from segcvae.outputs import SegOutput

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config

#: Sohn et al.'s objectives that train recognition_net q(z | x, y).
OBJECTIVES_WITH_RECOGNITION = ("cvae", "hybrid")


@dataclass
class SegContext:
    """Everything that depends on the image only: computed once, shared by all z samples.

    Attributes:
        y_hat: Baseline logits at strides 4, 2, 1, each (B, K, H/s, W/s).
        features: Encoder feature at the latent stride (B, C, h, w).
        context: Generation-net context: (B, hidden, H/s, W/s), or the refinement stage's down
            path (``generation="refine"``).
        prior: p(z | x, y_hat), batch shape (B,), event shape (Z, h, w) (a Gaussian), or (Z,) (a
            categorical over Z codes, one-hot events).
        code_logits: A categorical latent's full-resolution logits of every code (B, Z, K, H, W),
            filled by the first inference call that needs them (``decode_mean``,
            ``decode_samples``, the exact likelihood) and reused by the others; never under autograd.
    """

    y_hat: list[Tensor]
    features: Tensor
    context: Tensor | RefineContext
    prior: Distribution
    code_logits: Tensor | None = None


class SegCVAE(ModelFamily):
    """Conditional VAE for segmentation with a recurrent connection from y_hat to the prior
    (``model.arch: sohn``; ``loss.objective`` cvae, gsnn or hybrid).

    Args:
        classes: Number of classes K.
        encoder_name: Any segmentation_models_pytorch encoder name.
        encoder_depth: Encoder stages (>= log2(latent_stride)).
        encoder_weights: Pretrained encoder weights or None.
        decoder_channels: Decoder block widths, deepest first.
        latent: ``"spatial"`` (a Gaussian z map at ``latent_stride``), ``"global"`` (one Gaussian z
            vector) or ``"categorical"`` (one of Z codes per image, for data whose ambiguity is a
            choice among a few answers: training and the likelihood sum over all Z codes exactly).
        latent_channels: Z (the number of codes of a categorical latent).
        latent_stride: Stride of the z map.
        hidden_channels: Width of the prior, recognition and generation nets.
        head_channels: Width of the generation net alone (0: ``hidden_channels``): what each
            code or z sample costs per pixel with ``generation="full"``.
        recognition: Build recognition_net (needed by the cvae and hybrid objectives, not gsnn).
        logvar_min: Lower log-variance bound.
        logvar_max: Upper log-variance bound.
        in_channels: Image channels.
        generation: Where z enters the generation net: ``"quarter"`` (stride 4, cheapest) or
            ``"full"`` (full resolution, pixel-sharp z-dependent boundaries), see
            :class:`GenerationNet`; or ``"refine"``: a second prediction stage with decoder-like
            capacity that refines y_hat from the image features, y_hat and z
            (:class:`~segcvae.models.refine.RefineNet`).
        refine_channels: Width of the refinement stage (``generation="refine"``).
        shared_head_layers: Hidden layers of the generation head computed once per image before z
            enters (0 or 1, see :class:`GenerationNet`; ``generation`` quarter or full).
        code_channels: The width of the layer z enters with ``shared_head_layers=1`` (0: as
            ``hidden_channels``).
        code_sampling: How a categorical latent draws n hypotheses: ``"systematic"`` (each code
            floor(n p) or ceil(n p) times, :func:`~segcvae.models.latent.systematic_draws`) or
            ``"independent"`` (n independent draws from p(c | x)).
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

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        latent: str = "categorical",
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
        code_sampling: str = "systematic",
        shared_head_layers: int = 0,
        code_channels: int = 0,
    ) -> None:
        super().__init__()
        if latent not in ("spatial", "global", "categorical"):
            raise ValueError(f"latent must be spatial, global or categorical, got {latent!r}")
        if code_sampling not in ("systematic", "independent"):
            raise ValueError(
                f"code_sampling must be systematic or independent, got {code_sampling!r}"
            )
        self.code_sampling = code_sampling
        self.num_classes = classes
        self.latent = latent
        self.latent_channels = latent_channels
        self.baseline = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
        )
        self.latent_index = int(math.log2(latent_stride))
        enc_channels = self.baseline.encoder.out_channels
        if self.latent_index >= len(enc_channels):
            raise ValueError(
                f"latent_stride={latent_stride} needs encoder_depth >= {self.latent_index}, "
                f"got {encoder_depth}"
            )
        gaussian_args = dict(
            feature_channels=enc_channels[self.latent_index],
            label_channels=classes,
            latent_channels=latent_channels,
            latent_stride=latent_stride,
            hidden_channels=hidden_channels,
            global_latent=latent != "spatial",
            categorical=latent == "categorical",
            logvar_min=logvar_min,
            logvar_max=logvar_max,
        )
        self.prior_net = PriorNet(**gaussian_args)
        self.recognition_net = RecognitionNet(**gaussian_args) if recognition else None
        self.context_index = 0 if generation == "quarter" else -1  # decoder stride 4 or 1
        context_channels = (
            self.baseline.decoder_channels_quarter
            if generation == "quarter"
            else self.baseline.heads[-1][0].in_channels
        )
        self.generation_net: GenerationNet | RefineNet
        if generation == "refine":
            self.generation_net = RefineNet(
                context_channels, latent_channels, classes, width=refine_channels
            )
        else:
            self.generation_net = GenerationNet(
                context_channels,
                latent_channels,
                classes,
                head_channels or hidden_channels,
                inject=generation,
                shared_layers=shared_head_layers,
                code_channels=code_channels,
            )

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys, the latent's (``model.latent*``, ``generation``, ``code_sampling``,
        ``hidden_channels``, ``head_channels``, ``refine_channels``, log-variance bounds) and, from
        ``loss.objective``, whether to build recognition_net (cvae and hybrid need it)."""
        m = cfg.model
        objective = cfg.loss.objective
        if objective not in ("gsnn", *OBJECTIVES_WITH_RECOGNITION):
            raise ConfigError(
                f"loss.objective: model.arch=sohn trains with cvae, gsnn or hybrid, got "
                f"{objective!r} (a CNN is model.arch=cnn)"
            )
        return dict(
            **unet_kwargs(cfg),
            latent=m.latent,
            latent_channels=m.latent_channels,
            latent_stride=m.latent_stride,
            hidden_channels=m.hidden_channels,
            head_channels=m.head_channels,
            recognition=objective in OBJECTIVES_WITH_RECOGNITION,
            logvar_min=m.logvar_min,
            logvar_max=m.logvar_max,
            generation=m.generation,
            refine_channels=m.refine_channels,
            code_sampling=m.code_sampling,
            shared_head_layers=m.shared_head_layers,
            code_channels=m.code_channels,
        )

    @classmethod
    def build_objective(cls, cfg: Config) -> SohnObjective:
        """``loss.objective`` for the latent kind: :class:`CategoricalObjective` for a categorical
        latent, :class:`GaussianObjective` otherwise."""
        loss = cfg.loss
        settings = dict(
            alpha=loss.alpha,
            scale_weights=loss.scale_weights,
            y_hat_weight=loss.y_hat_weight,
            beta=loss.beta,
            kl_warmup_steps=loss.kl_warmup_steps,
            free_bits=loss.free_bits,
        )
        if cfg.model.latent == "categorical":
            return CategoricalObjective(
                loss.objective,
                code_posterior=loss.code_posterior,
                code_temperature=loss.code_temperature,
                **settings,
            )
        return GaussianObjective(loss.objective, **settings)

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """The objective's name (cvae, gsnn, hybrid): what the logs call Sohn et al.'s models."""
        return cfg.loss.objective

    @property
    def likelihood_methods(self) -> tuple[str, ...]:
        """Estimators of log p(y | x), best first: importance sampling needs the recognition net;
        a categorical latent's likelihood is exact (a sum over its codes)."""
        if self.categorical:
            return ("exact",)
        return ("is", "mc") if self.recognition_net is not None else ("mc",)

    def encode(self, x: Tensor) -> SegContext:
        """Run everything that depends on the image only (once per image).

        Args:
            x: Images (B, C, H, W).
        """
        f = self.baseline.features(x)
        features = f.encoder[self.latent_index]
        prior = self.prior_net(features, f.y_hat[-1])
        context = self.generation_net.context(f.decoder[self.context_index], f.y_hat[-1])
        return SegContext(y_hat=f.y_hat, features=features, context=context, prior=prior)

    @property
    def scores_target_sets(self) -> bool:
        """Whether ``forward`` takes a set of masks per image, y (B, M, H, W) (``train.rater:
        all``): a categorical latent decodes its codes once, whatever the target, so scoring M
        masks costs M losses, not M passes of the network."""
        return self.categorical

    @property
    def categorical(self) -> bool:
        """Whether z is one of ``latent_channels`` codes (exact sums replace sampling)."""
        return self.latent == "categorical"

    def all_codes(self, ctx: SegContext) -> Tensor:
        """Every code of a categorical latent, for every image: (B, Z, Z, 1, 1) one-hot."""
        b = ctx.y_hat[-1].shape[0]
        eye = torch.eye(self.latent_channels, dtype=ctx.context.dtype, device=ctx.context.device)
        return eye[None, :, :, None, None].expand(b, -1, -1, -1, -1)

    def _as_z(self, codes: Tensor) -> Tensor:
        """Categorical samples (..., Z) as z maps (..., Z, 1, 1)."""
        return codes[..., None, None]

    def decode_codes(self, ctx: SegContext) -> Tensor:
        """Full-resolution logits of every code of a categorical latent (B, Z, K, H, W).

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
        """q(z | x, y) for labels y (B, H, W), batch shape (B,); for a categorical latent also for
        a set of masks per image (B, M, H, W): one q(c | x, y_m) per mask, batch shape (B, M)."""
        if self.recognition_net is None:
            raise RuntimeError("this model has no recognition_net (it was built for gsnn)")
        if y.dim() == 4:  # the features repeated once per mask
            if not self.categorical:
                raise ValueError(
                    f"a set of masks per image needs a categorical latent, not {self.latent}"
                )
            b, m = y.shape[:2]
            features = ctx.features.repeat_interleave(m, dim=0)
            q = self.recognition_net(features, y.flatten(0, 1))
            return OneHotCategorical(logits=q.logits.unflatten(0, (b, m)))
        return self.recognition_net(ctx.features, y)

    def generate(self, ctx: SegContext, z: Tensor, full_only: bool = False) -> list[Tensor]:
        """Logits at strides 4, 2, 1, each (B, S, K, H/s, W/s), for z (B, S, Z, h, w).

        With ``full_only`` only the full-resolution logits are computed (a list of one).
        """
        return self.generation_net(ctx.context, z, ctx.y_hat, full_only=full_only)

    def forward(self, x: Tensor, y: Tensor | None = None) -> SegOutput:
        """One training / evaluation pass.

        The prior path (GSNN) is always computed with one reparameterised sample; when ``y`` is
        given and the model has a recognition net, the posterior path (CVAE) is computed too. Both
        paths share one batched call of the generation head.

        Args:
            x: Images (B, C, H, W).
            y: Labels (B, H, W) long, or None; a categorical latent also takes a set of masks per
                image (B, M, H, W) (padded with the ignore index), see :attr:`scores_target_sets`.
        """
        ctx = self.encode(x)
        if self.categorical:
            return self._forward_categorical(ctx, y)
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

    def _forward_categorical(self, ctx: SegContext, y: Tensor | None) -> SegOutput:
        """Decode every code once; both paths are exact expectations over those logits.

        ``logits_prior`` / ``logits_posterior`` hold the logits of one code drawn from p / q (for
        display); the objectives use ``code_logits`` weighted by the probabilities instead. With
        a set of masks y (B, M, H, W) the posterior has batch shape (B, M), one q per mask (the
        displayed posterior logits are those of the first mask's draw).
        """
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

    def decode_mean(self, ctx: SegContext) -> Tensor:
        """Deterministic logits (B, K, H, W).

        A Gaussian latent uses z = E[z | x]. For a categorical latent, whose mean is no code, the
        result is the exact predictive distribution ``log sum_c p(c | x) p(y_pixel | x, c)``
        (log-probabilities, which are valid logits).
        """
        if self.categorical:
            logits = self.decode_codes(ctx)  # (B, Z, K, H, W)
            log_p = ctx.prior.logits.log_softmax(-1)[:, :, None, None, None]  # (B, Z, 1, 1, 1)
            return (log_p + logits.float().log_softmax(dim=2)).logsumexp(dim=1)
        return self.generate(ctx, ctx.prior.mean.unsqueeze(1), full_only=True)[-1][:, 0]

    def decode_samples(self, ctx: SegContext, n: int) -> Tensor:
        """n hypotheses from the prior: full-resolution logits (B, n, K, H, W).

        A categorical latent has only Z distinct hypotheses: when n >= Z (or the codes are decoded
        already) every code is decoded once and the n draws pick from them, so 16 or 100
        hypotheses cost what the mean prediction costs. Its codes are drawn as ``code_sampling``
        says (systematic by default).
        """
        if not self.categorical:
            z = ctx.prior.sample((n,)).transpose(0, 1)  # (B, n, Z, h, w)
            return self.generate(ctx, z, full_only=True)[-1]
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

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """(Z,) for a categorical latent (one Gumbel-max draw per hypothesis), (Z, 1, 1) for a
        global one, (Z, H / latent_stride, W / latent_stride) for a spatial one."""
        z = self.latent_channels
        if self.latent != "spatial":
            return (z,) if self.categorical else (z, 1, 1)
        stride = 2**self.latent_index
        return (z, height // stride, width // stride)

    def decode_noise(self, ctx: SegContext, eps: Tensor) -> Tensor:
        """Hypotheses from standard-normal noise eps (S, B, *noise_shape): logits (B, S, K, H, W).

        A Gaussian z is ``prior.mean + prior.stddev * eps``; a categorical one is the Gumbel-max
        code of ``Phi(eps)`` (:func:`~segcvae.models.latent.gumbel_max_codes`), and only the drawn
        codes are decoded.
        """
        if self.categorical:
            z = gumbel_max_codes(ctx.prior.logits, eps)  # (S, B, Z) one-hot
            return self.generate(ctx, self._as_z(z.transpose(0, 1)), full_only=True)[-1]
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
            method: ``"is"``, ``"mc"`` or ``"exact"`` (one of :attr:`likelihood_methods`).
            chunk_size: Samples per generation call.

        Yields:
            ``(logits (B, s, K, H, W), log_weight (B, s) or None)``, the s summing to n.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        if method == "exact":  # every code once, weighted by Z p(c | x): log-mean-exp = log-sum
            log_w = ctx.prior.logits.log_softmax(-1).float() + math.log(self.latent_channels)
            yield self.decode_codes(ctx), log_w
            return
        proposal = self.posterior(ctx, y) if method == "is" else ctx.prior
        z = proposal.sample((n,)).transpose(0, 1)  # (B, S, Z, h, w)
        for zc in z.split(chunk_size, dim=1):
            log_w = None
            if method == "is":
                zt = zc.transpose(0, 1)  # (s, B, ...): log_prob broadcasts over the leading dim
                log_w = (ctx.prior.log_prob(zt) - proposal.log_prob(zt)).transpose(0, 1).float()
            yield self.generate(ctx, zc, full_only=True)[-1], log_w
