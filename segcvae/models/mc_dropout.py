"""MC dropout (Gal & Ghahramani 2016; Kendall et al.'s Bayesian SegNet): the baseline CNN with
channel dropout kept on at sampling time.

The CNN of the config's U-Net (``model.arch: cnn``, the same weights) with channel dropout
(``dropout2d``: a whole feature map kept or zeroed, kept ones scaled by 1 / (1 - p)) on the output
of the decoder's last ``model.mc_dropout.stages`` blocks. Training minimises the CNN's objective
(the multi-scale NLL of y_hat) on a dropout forward; a hypothesis is the prediction under one
draw of the dropout masks, whatever ``model.eval()`` says (the masks are drawn explicitly, never
by ``nn.Dropout``); the deterministic prediction (``decode_mean`` / ``predict``) is the network
with dropout off. The likelihood is Monte Carlo over masks, ``log (1/S) sum_s p(y | x, mask_s)``.

Features once, samples cheap: the encoder and the decoder up to the first dropped block run once
per image (:meth:`MCDropoutCNN.encode`); each hypothesis reruns only the blocks after it and the
full-resolution head, batched over the S hypotheses (``stages: 1`` reruns the head alone).

Noise contract (export): one standard normal per dropped channel, ``noise_shape = (sum of the
dropped blocks' channels,)``; a channel is kept where ``Phi(eps) >= p``, written as
``eps >= Phi^-1(p)`` (probability 1 - p). ``decode_samples`` is ``decode_noise`` of torch's own
normals, so the exported sampler draws what the model draws.

The other baselines the field compares with: ``ensemble`` (``segcvae.models.ensemble``) and the
CNN's probability map with level-set hypotheses (``model.arch: cnn`` with
``eval.hypothesis_masks: level_set``, ``configs/shapes_level_set_cnn.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from torch import Tensor

from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, DecoderStep, unet_kwargs
from segcvae.outputs import CNNOutput
from segcvae.settings import setting

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config
    from segcvae.losses import DeterministicObjective


@dataclass
class MCDropoutSettings:
    """``model.mc_dropout``: the MC-dropout family's own settings (it also reads the U-Net's
    ``encoder_*`` and ``decoder_channels``, and ``loss.scale_weights`` for its objective)."""

    # 0.2: on validation (exclusive shapes, 300 steps) 0.2 gave GED 0.21 and NLL 253 against 0.49
    # and 293 for Bayesian SegNet's 0.5, which drops too many of these narrow blocks' channels
    rate: float = setting(
        0.2, gt=0, lt=1, help="dropout probability p of a decoder channel (Bayesian SegNet: 0.5)"
    )
    stages: int = setting(
        2,
        ge=1,
        le=3,
        help="decoder blocks with channel dropout on their output, counted back from the "
        "full-resolution one (1: 1; 2: 1/2 and 1; 3: 1/4, 1/2 and 1); hypotheses rerun the "
        "blocks after the first of them",
    )


@dataclass
class MCDropoutContext:
    """What the image determines: the decoder up to the first dropped block.

    Attributes:
        feature: Output of the first dropped block before dropout (B, D, h, w).
        steps: How each later decoder block is called (:class:`DecoderStep`).
    """

    feature: Tensor
    steps: list[DecoderStep]


class MCDropoutCNN(ModelFamily):
    """The baseline CNN with MC channel dropout (``model.arch: mc_dropout``; module docstring).

    Args:
        classes: Number of classes K.
        encoder_name: Any ``segmentation_models_pytorch`` encoder.
        encoder_depth: Encoder stages (3-5).
        encoder_weights: Pretrained weights name or None.
        decoder_channels: Decoder block widths, deepest first.
        rate: p, the probability that a channel is dropped, in (0, 1).
        stages: Decoder blocks with dropout on their output, counted back from the last (1-3).
        in_channels: Image channels.
    """

    name = "mc_dropout"
    settings = MCDropoutSettings
    likelihood_methods: tuple[str, ...] = ("mc",)

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        rate: float = 0.2,
        stages: int = 2,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 0 < rate < 1 or not 1 <= stages <= 3:
            raise ValueError(f"need 0 < rate < 1 and 1 <= stages <= 3, got {rate}, {stages}")
        self.num_classes = classes
        self.rate = rate
        self.stages = stages
        self.cnn = BaselineCNN(
            classes,
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=decoder_channels,
            in_channels=in_channels,
        )
        self.first = encoder_depth - stages  # index of the first decoder block with dropout
        self.site_channels = list(decoder_channels)[self.first :]
        # keep a channel where Phi(eps) >= p, i.e. eps >= Phi^-1(p): probability 1 - p
        self.threshold = NormalDist().inv_cdf(rate)

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys and ``model.mc_dropout`` (:class:`MCDropoutSettings`)."""
        own = cfg.model.settings("mc_dropout")
        return dict(**unet_kwargs(cfg), rate=own.rate, stages=own.stages)

    @classmethod
    def build_objective(cls, cfg: Config) -> DeterministicObjective:
        """The CNN's objective, the multi-scale NLL of y_hat (of the dropout forward)."""
        return BaselineCNN.build_objective(cfg)

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """``mc_dropout(p=0.5)``."""
        return f"mc_dropout(p={cfg.model.settings('mc_dropout').rate:g})"

    # ------------------------------------------------------------------ the two parts
    def _trunk(self, x: Tensor) -> tuple[list[Tensor], list[DecoderStep]]:
        """Encoder and decoder blocks up to the first dropped one (no dropout).

        Returns:
            The outputs of decoder blocks 0 .. first, and the steps of the blocks after it.
        """
        cnn = self.cnn
        d, steps = cnn.decoder_steps(cnn.encoder_features(x))
        outs = []
        for block, step in zip(cnn.decoder.blocks[: self.first + 1], steps, strict=False):
            d = block(d, step.height, step.width, skip_connection=step.skip)
            outs.append(d)
        return outs, steps[self.first + 1 :]

    def _tail(self, ctx: MCDropoutContext, keep: Tensor | None) -> list[Tensor]:
        """The dropped blocks' outputs under the masks ``keep``, each (B*S, D_j, h_j, w_j).

        Args:
            ctx: :meth:`encode`.
            keep: (B, S, sum of the dropped blocks' channels) bool, True = kept; None: no
                dropout (S = 1).
        """
        scale = 1.0 / (1.0 - self.rate)
        masks = None if keep is None else keep.split(self.site_channels, dim=-1)
        b = ctx.feature.shape[0]

        def drop(f: Tensor, i: int) -> Tensor:  # (B*S or B, D, h, w) -> (B*S, D, h, w)
            if masks is None:
                return f
            m = masks[i].to(f.dtype)[..., None, None] * scale  # (B, S, D, 1, 1)
            return (f.unflatten(0, (b, -1)) * m).flatten(0, 1)

        d = drop(ctx.feature, 0)
        outs = [d]
        s = d.shape[0] // b
        blocks = self.cnn.decoder.blocks[self.first + 1 :]
        for i, (block, step) in enumerate(zip(blocks, ctx.steps, strict=True), start=1):
            skip = step.skip
            if skip is not None:  # the same skip for every hypothesis of an image
                skip = skip.unsqueeze(1).expand(-1, s, -1, -1, -1).flatten(0, 1)
            d = drop(block(d, step.height, step.width, skip_connection=skip), i)
            outs.append(d)
        return outs

    def keep_masks(self, eps: Tensor) -> Tensor:
        """Which channels a hypothesis keeps: ``Phi(eps) >= p``, (S, B, N) -> (B, S, N) bool."""
        return (eps >= self.threshold).transpose(0, 1)

    # ------------------------------------------------------------------ training
    def forward(self, x: Tensor, y: Tensor | None = None) -> CNNOutput:
        """y_hat at strides 4, 2, 1 under one draw of the dropout masks (in any mode).

        Args:
            x: Images (B, C, H, W).
            y: Accepted for a uniform interface; unused.
        """
        outs, steps = self._trunk(x)
        ctx = MCDropoutContext(feature=outs[-1], steps=steps)
        eps = x.new_empty(1, x.shape[0], sum(self.site_channels)).normal_()
        decoded = outs[:-1] + self._tail(ctx, self.keep_masks(eps))  # every block's output
        heads = self.cnn.heads
        y_hat = [head(decoded[j]) for head, j in zip(heads, self.cnn.head_blocks, strict=True)]
        return CNNOutput(y_hat=y_hat)

    # ------------------------------------------------------------------ inference
    def encode(self, x: Tensor) -> MCDropoutContext:
        """The decoder up to the first dropped block, once per image.

        Args:
            x: Images (B, C, H, W).
        """
        outs, steps = self._trunk(x)
        return MCDropoutContext(feature=outs[-1], steps=steps)

    def decode_mean(self, ctx: MCDropoutContext) -> Tensor:
        """The deterministic prediction, dropout off: logits (B, K, H, W)."""
        return self.cnn.heads[-1](self._tail(ctx, None)[-1])

    def decode_noise(self, ctx: MCDropoutContext, eps: Tensor) -> Tensor:
        """The predictions under the masks ``Phi(eps) >= p``: logits (B, S, K, H, W).

        Args:
            ctx: :meth:`encode`.
            eps: Standard-normal noise (S, B, N), N = :meth:`noise_shape`'s one entry.
        """
        b = ctx.feature.shape[0]
        logits = self.cnn.heads[-1](self._tail(ctx, self.keep_masks(eps))[-1])  # (B*S, K, H, W)
        return logits.unflatten(0, (b, -1))

    def decode_samples(self, ctx: MCDropoutContext, n: int) -> Tensor:
        """n hypotheses (B, n, K, H, W): :meth:`decode_noise` of torch's standard normals."""
        b = ctx.feature.shape[0]
        return self.decode_noise(
            ctx, ctx.feature.new_empty(n, b, sum(self.site_channels)).normal_()
        )

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """(N,): one normal per channel of the dropped blocks, whatever the image size."""
        return (sum(self.site_channels),)

    def likelihood_samples(
        self, ctx: MCDropoutContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Predictions under n dropout draws to score ``y`` against (Monte Carlo: weights None).

        Args:
            ctx: :meth:`encode`.
            y: Labels (B, H, W) (unused: the masks do not depend on them).
            n: Draws S.
            method: ``"mc"``.
            chunk_size: Draws decoded at a time (bounds memory).

        Yields:
            ``(logits (B, s, K, H, W), None)``, the s summing to n.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        for start in range(0, n, chunk_size):
            yield self.decode_samples(ctx, min(chunk_size, n - start)), None
