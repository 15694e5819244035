"""Deep ensembles (Lakshminarayanan et al. 2017): M CNNs of one config, from M seeds.

M members, each the baseline CNN of the config's U-Net (``model.arch: cnn``), member m initialised
as that CNN built under seed ``train.seed + m`` (member 0 is the CNN of the same config; with
``model.encoder_weights`` set, the members share the pretrained encoder and differ in the rest).
One command trains them all (``tools/train.py`` with ``model.arch: ensemble``): the loss is the
sum of the members' CNN losses on the same batch. The members share no parameter, so each one's
gradient is that of its own loss and, with Adam (per-parameter steps), each member trains exactly
as it would alone on the same batches (except under ``train.grad_clip``, which clips the norm of
all members' gradients together).

* The deterministic prediction is the members' mean probability, returned as log-probabilities
  (B, K, H, W) (its softmax is the mean).
* Hypotheses are the members' predictions: hypothesis i of an image is member (r + i) mod M for
  one uniform r per image (systematic draws: 16 hypotheses of 4 members are each member 4 times).
* The likelihood is the mixture's, exact: ``log (1/M) sum_m p_m(y | x)``.
* Noise contract (export): one normal per hypothesis, member ``floor(Phi(eps) M)`` (a uniform
  member per hypothesis, drawn independently).

The other baselines the field compares with: ``mc_dropout`` (``segcvae.models.mc_dropout``) and the
CNN's probability map with level-set hypotheses (``model.arch: cnn`` with
``eval.hypothesis_masks: level_set``, ``configs/shapes_level_set_cnn.yaml``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from segcvae.losses import multiscale_nll
from segcvae.models.base import ModelFamily
from segcvae.models.baseline import BaselineCNN, unet_kwargs
from segcvae.settings import setting

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


@dataclass
class EnsembleSettings:
    """``model.ensemble``: the ensemble family's own settings (it also reads the U-Net's
    ``encoder_*`` and ``decoder_channels``, ``train.seed`` for the members' seeds and
    ``loss.scale_weights`` for their objective)."""

    members: int = setting(
        4, ge=2, le=32, help="M, CNNs from seeds train.seed + 0 .. M-1 (each a whole CNN)"
    )


def mixture_log_probs(member_logits: Tensor) -> Tensor:
    """Log of the members' mean probability: (B, M, K, ...) -> (B, K, ...)."""
    m = member_logits.shape[1]
    return torch.logsumexp(member_logits.float().log_softmax(dim=2), dim=1) - math.log(m)


@dataclass
class EnsembleOutput:
    """What one forward pass of an ensemble computed.

    Attributes:
        member_logits: Each member's logits at strides 4, 2, 1, each (B, M, K, H/s, W/s).
    """

    member_logits: list[Tensor]

    @property
    def logits(self) -> Tensor:
        """The mixture's full-resolution log-probabilities (B, K, H, W)."""
        return mixture_log_probs(self.member_logits[-1])


class EnsembleObjective(nn.Module):
    """The sum over members of the CNN's multi-scale NLL (each member its own loss).

    Args:
        scale_weights: NLL weight of the 1/4, 1/2 and 1 scales (``loss.scale_weights``).
    """

    def __init__(self, *, scale_weights: tuple[float, ...] | list[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        self.scale_weights = list(scale_weights)

    def forward(self, out: EnsembleOutput, y: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Compute the loss terms.

        Args:
            out: The ensemble's output for a batch.
            y: Labels (B, H, W) long.
            step: Unused (the common signature).

        Returns:
            ``loss``: the sum of the members' NLLs; ``nll`` and ``nll_4/2/1``: their mean (the
            scale of one CNN's log).
        """
        members = out.member_logits[0].shape[1]
        per_member = [
            multiscale_nll([lg[:, m] for lg in out.member_logits], y, self.scale_weights)
            for m in range(members)
        ]
        loss = torch.stack([t["nll"] for t in per_member]).sum()
        terms = {k: torch.stack([t[k] for t in per_member]).mean().detach() for k in per_member[0]}
        return {**terms, "loss": loss}


@dataclass
class EnsembleContext:
    """What the image determines: every member's prediction.

    Attributes:
        member_logits: Full-resolution logits of the M members (B, M, K, H, W).
    """

    member_logits: Tensor


class EnsembleCNN(ModelFamily):
    """A deep ensemble of baseline CNNs (``model.arch: ensemble``; module docstring).

    Args:
        classes: Number of classes K.
        encoder_name: Any ``segmentation_models_pytorch`` encoder.
        encoder_depth: Encoder stages (3-5).
        encoder_weights: Pretrained weights name or None.
        decoder_channels: Decoder block widths, deepest first.
        members: M >= 2.
        seed: Member m is initialised as a :class:`BaselineCNN` built right after
            ``torch.manual_seed(seed + m)`` (``train.seed``); torch's global RNG is left as it was.
        in_channels: Image channels.
    """

    name = "ensemble"
    settings = EnsembleSettings
    likelihood_methods: tuple[str, ...] = ("exact",)

    def __init__(
        self,
        classes: int,
        *,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = (128, 64, 64, 32, 32),
        members: int = 4,
        seed: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs members >= 2, got {members}")
        self.num_classes = classes
        nets = []
        for m in range(members):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                nets.append(
                    BaselineCNN(
                        classes,
                        encoder_name=encoder_name,
                        encoder_depth=encoder_depth,
                        encoder_weights=encoder_weights,
                        decoder_channels=decoder_channels,
                        in_channels=in_channels,
                    )
                )
        self.members = nn.ModuleList(nets)
        # member floor(Phi(eps) M) = how many of Phi^-1(1/M), ..., Phi^-1((M-1)/M) eps reaches
        self.thresholds = [NormalDist().inv_cdf(m / members) for m in range(1, members)]

    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The U-Net's keys, ``model.ensemble`` (:class:`EnsembleSettings`) and ``train.seed``."""
        own = cfg.model.settings("ensemble")
        return dict(**unet_kwargs(cfg), members=own.members, seed=cfg.train.seed)

    @classmethod
    def build_objective(cls, cfg: Config) -> EnsembleObjective:
        """The sum of the members' multi-scale NLLs (``loss.scale_weights``)."""
        return EnsembleObjective(scale_weights=cfg.loss.scale_weights)

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """``ensemble(M=4)``."""
        return f"ensemble(M={cfg.model.settings('ensemble').members})"

    @property
    def num_members(self) -> int:
        """M."""
        return len(self.members)

    def forward(self, x: Tensor, y: Tensor | None = None) -> EnsembleOutput:
        """Every member's y_hat at strides 4, 2, 1.

        Args:
            x: Images (B, C, H, W).
            y: Accepted for a uniform interface; unused.
        """
        per_member = [member(x).y_hat for member in self.members]
        scales = zip(*per_member, strict=True)
        return EnsembleOutput(member_logits=[torch.stack(s, dim=1) for s in scales])

    def encode(self, x: Tensor) -> EnsembleContext:
        """Every member's full-resolution prediction (B, M, K, H, W).

        Args:
            x: Images (B, C, H, W).
        """
        logits = [member.decode_mean(member.encode(x)) for member in self.members]
        return EnsembleContext(member_logits=torch.stack(logits, dim=1))

    def decode_mean(self, ctx: EnsembleContext) -> Tensor:
        """The members' mean probability as log-probabilities (B, K, H, W)."""
        return mixture_log_probs(ctx.member_logits).to(ctx.member_logits.dtype)

    @staticmethod
    def _pick(member_logits: Tensor, idx: Tensor) -> Tensor:
        """(B, M, K, H, W) and member indices (B, S) -> (B, S, K, H, W)."""
        rows = torch.arange(member_logits.shape[0], device=idx.device)[:, None]
        return member_logits[rows, idx]

    def decode_samples(self, ctx: EnsembleContext, n: int) -> Tensor:
        """n hypotheses (B, n, K, H, W): members (r + i) mod M, i < n, r uniform per image."""
        logits = ctx.member_logits
        m = logits.shape[1]
        r = torch.randint(m, (logits.shape[0], 1), device=logits.device)
        return self._pick(logits, (r + torch.arange(n, device=logits.device)) % m)

    def noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """(1,): one normal per hypothesis picks its member."""
        return (1,)

    def member_of(self, eps: Tensor) -> Tensor:
        """Member ``floor(Phi(eps) M)`` per hypothesis: eps (S, B, 1) -> (B, S) long."""
        t = eps.new_tensor(self.thresholds)  # (M-1,)
        return (eps >= t).sum(dim=-1).transpose(0, 1)

    def decode_noise(self, ctx: EnsembleContext, eps: Tensor) -> Tensor:
        """Member ``floor(Phi(eps) M)``'s prediction per hypothesis: (B, S, K, H, W).

        Args:
            ctx: :meth:`encode`.
            eps: Standard-normal noise (S, B, 1).
        """
        return self._pick(ctx.member_logits, self.member_of(eps))

    def likelihood_samples(
        self, ctx: EnsembleContext, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """The M members' logits, equally weighted: the mixture's likelihood, exact.

        ``segcvae.metrics.conditional_log_likelihood`` takes the log-mean-exp over what this
        yields, ``log (1/M) sum_m p_m(y | x)``.

        Args:
            ctx: :meth:`encode`.
            y: Labels (B, H, W) (unused).
            n: Ignored: the mixture has M components.
            method: ``"exact"``.
            chunk_size: Members yielded at a time.

        Yields:
            ``(logits (B, s, K, H, W), None)``, the s summing to M.
        """
        if method not in self.likelihood_methods:
            raise ValueError(f"method {method!r} not in {self.likelihood_methods}")
        m = ctx.member_logits.shape[1]
        for start in range(0, m, chunk_size):
            yield ctx.member_logits[:, start : start + chunk_size], None
