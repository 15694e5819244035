"""Baseline CNN: an smp encoder and U-Net decoder with prediction heads at 1/4, 1/2 and 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import segmentation_models_pytorch as smp
from segmentation_models_pytorch.base import SegmentationHead
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import Tensor, nn

from segcvae.losses import DeterministicObjective
from segcvae.models.base import DeterministicModel
from segcvae.outputs import CNNOutput

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config

SCALES = (4, 2, 1)  # output strides of the three prediction heads


@dataclass
class BaselineFeatures:
    """What one pass of the baseline computes; shared by every later network.

    Attributes:
        encoder: Encoder feature maps, index i at stride 2**i: (B, C_i, H / 2**i, W / 2**i).
        decoder: Decoder feature maps at strides 4, 2, 1: (B, D_s, H / s, W / s).
        y_hat: Initial prediction logits at strides 4, 2, 1: (B, K, H / s, W / s); empty for a
            baseline built without heads.
    """

    encoder: list[Tensor]
    decoder: list[Tensor]
    y_hat: list[Tensor]


@dataclass
class DecoderStep:
    """How one decoder block is called: output size (height, width) and skip connection.

    Attributes:
        height: Output height (an int, or a symbolic size when traced for export).
        width: Output width.
        skip: Encoder map joined in, (B, C, height, width), or None (the last block).
    """

    height: Any
    width: Any
    skip: Tensor | None


def unet_kwargs(cfg: Config) -> dict[str, Any]:
    """The U-Net arguments every family reads from ``cfg.model``: encoder and decoder."""
    m = cfg.model
    return dict(
        encoder_name=m.encoder_name,
        encoder_depth=m.encoder_depth,
        encoder_weights=m.encoder_weights,
        decoder_channels=list(m.decoder_channels),
    )


class BaselineCNN(DeterministicModel):
    """The paper's baseline CNN: x -> y_hat, with multi-scale heads (``model.arch: cnn``).

    Its hypotheses are its one prediction repeated. With ``eval.hypothesis_masks: level_set`` they
    are level sets of its probability map (one uniform level per hypothesis,
    :func:`segcvae.inference.level_set_labels`): the CNN with level-set hypotheses, one of the
    three baselines the field compares with, beside ``mc_dropout`` and ``ensemble``
    (``configs/shapes_level_set_cnn.yaml``; the QUBIQ configs draw every family's masks so). Level
    sets hold nested alternatives (a boundary further or less far), not either/or ones.

    Args:
        classes: Number of classes K.
        encoder_name: Any ``segmentation_models_pytorch`` encoder (``resnet18``, ``tu-...``).
        encoder_depth: Encoder stages (3-5); the decoder has as many blocks.
        encoder_weights: Pretrained weights name (e.g. ``"imagenet"``) or None for random init.
        decoder_channels: Channels of each decoder block, deepest first.
        in_channels: Image channels.
        heads: Build the three prediction heads. Families that read only the decoder features
            (the Probabilistic U-Net, SSN) pass False; :meth:`features` then returns no y_hat.
    """

    name = "cnn"

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        in_channels: int = 3,
        heads: bool = True,
    ) -> None:
        super().__init__()
        if encoder_depth < 3:
            raise ValueError(
                f"encoder_depth must be >= 3 for heads at 1/4, 1/2, 1; got {encoder_depth}"
            )
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"decoder_channels has {len(decoder_channels)} entries; expected encoder_depth="
                f"{encoder_depth}"
            )
        self.num_classes = classes
        self.encoder_depth = encoder_depth
        self.encoder = smp.encoders.get_encoder(
            encoder_name, in_channels=in_channels, depth=encoder_depth, weights=encoder_weights
        )
        self.decoder = UnetDecoder(
            encoder_channels=self.encoder.out_channels,
            decoder_channels=list(decoder_channels),
            n_blocks=encoder_depth,
        )
        # Block j of the decoder outputs stride 2**(depth - 1 - j): the last three are 1/4, 1/2, 1.
        self.head_blocks = [encoder_depth - 3, encoder_depth - 2, encoder_depth - 1]
        self.decoder_channels = list(decoder_channels)
        self.heads = nn.ModuleList(
            SegmentationHead(decoder_channels[j], classes, kernel_size=3) for j in self.head_blocks
        )
        if not heads:
            self.heads = nn.ModuleList()

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """``model.encoder_*`` and ``model.decoder_channels``."""
        return unet_kwargs(cfg)

    @classmethod
    def build_objective(cls, cfg: Config) -> DeterministicObjective:
        """The multi-scale NLL of y_hat (``loss.scale_weights``)."""
        return DeterministicObjective(
            scale_weights=cfg.loss.scale_weights, y_hat_weight=cfg.loss.y_hat_weight
        )

    @property
    def decoder_channels_quarter(self) -> int:
        """Channels of the decoder feature at stride 4 (input of the generation net)."""
        return self.heads[0][0].in_channels

    def encoder_features(self, x: Tensor) -> list[Tensor]:
        """The encoder's maps, index i at stride 2**i: (B, C_i, H / 2**i, W / 2**i).

        Args:
            x: Images (B, C, H, W); H and W divisible by 2**encoder_depth.
        """
        h, w = x.shape[-2:]
        stride = 2**self.encoder_depth
        if h % stride or w % stride:
            raise ValueError(f"image size {h}x{w} must be divisible by {stride}")
        return self.encoder(x)

    def decoder_steps(self, enc: list[Tensor]) -> tuple[Tensor, list[DecoderStep]]:
        """The decoder's input and, for each of its blocks, what the block is called with.

        smp's ``UnetDecoder.forward`` returns only the last block; this is its own loop laid out,
        so :meth:`features` can keep the stride-4 and stride-2 outputs and a family can run the
        blocks in two parts (MC dropout reruns only the last ones per hypothesis).

        Args:
            enc: :meth:`encoder_features`.

        Returns:
            ``(center, steps)``: the centre block's output and, per decoder block j, its output
            size and skip connection; block j is ``decoder.blocks[j](d, h, w, skip_connection=s)``.
        """
        shapes = [f.shape[2:] for f in enc][::-1]
        skips = enc[1:][::-1]
        steps = [
            DecoderStep(
                shapes[i + 1][0], shapes[i + 1][1], skips[i + 1] if i + 1 < len(skips) else None
            )
            for i in range(len(self.decoder.blocks))
        ]
        return self.decoder.center(skips[0]), steps

    def features(self, x: Tensor) -> BaselineFeatures:
        """Encode and decode once, keeping the intermediate maps.

        Args:
            x: Images (B, C, H, W); H and W divisible by 2**encoder_depth.
        """
        enc = self.encoder_features(x)
        d, steps = self.decoder_steps(enc)
        decoded = []
        for block, step in zip(self.decoder.blocks, steps, strict=True):
            d = block(d, step.height, step.width, skip_connection=step.skip)
            decoded.append(d)
        dec = [decoded[j] for j in self.head_blocks]
        y_hat = [head(f) for head, f in zip(self.heads, dec, strict=False)]  # (B, K, H/s, W/s)
        return BaselineFeatures(encoder=enc, decoder=dec, y_hat=y_hat)

    def forward(self, x: Tensor, y: Tensor | None = None) -> CNNOutput:
        """Predict y_hat at three scales; ``y`` is accepted for a uniform interface and unused."""
        return CNNOutput(y_hat=self.features(x).y_hat)

    def encode(self, x: Tensor) -> BaselineFeatures:
        """Everything computed from the image (the same two-stage interface as SegCVAE)."""
        return self.features(x)

    def decode_mean(self, ctx: BaselineFeatures) -> Tensor:
        """Full-resolution logits (B, K, H, W)."""
        return ctx.y_hat[-1]
