"""The ``model``, ``loss``, ``train`` and ``eval`` sections of the config."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from segcvae.config.checks import _finite, _require
from segcvae.config.groups import SettingsGroups
from segcvae.registry import family_names, family_settings

#: Validation metrics ``train.select`` may choose ``best.pt`` by: name -> better when "max" / "min".
SELECT_METRICS: dict[str, str] = {
    "mean_iou": "max",
    "pixel_accuracy": "max",
    "mean_iou_majority": "max",
    "mean_iou_raters": "max",
    "ged": "min",
    "hm_iou": "max",
    "soft_dice": "max",
    "ncc": "max",
    "ece": "min",
    "nll": "min",
    "nll_mc": "min",
    "empty_share_error": "min",
    "mode_freq_error": "min",
}
#: The metrics of :data:`SELECT_METRICS` computed from hypotheses (``eval.hypotheses`` > 0) and
#: from the likelihood (``eval.samples`` > 0).
HYPOTHESIS_METRICS = (
    "ged",
    "hm_iou",
    "soft_dice",
    "ncc",
    "ece",
    "empty_share_error",
    "mode_freq_error",
)
LIKELIHOOD_METRICS = ("nll", "nll_mc")


@dataclass(eq=False)
class ModelConfig(SettingsGroups):
    """Network sizes and the model family; for ``arch=sohn`` the sub-networks follow ``loss.objective``."""

    encoder_name: str = "resnet18"  # any segmentation_models_pytorch encoder name
    encoder_depth: int = 5  # encoder stages (3 to 5); the image side must divide by 2 ** depth
    encoder_weights: str | None = None  # e.g. "imagenet"; None = random init, no download
    # the last three blocks (strides 4, 2, 1) are 64 / 32 / 32 wide: the full-resolution head reads
    # the last one (docs/RESULTS.md, mode study: sharper hidden ends than 32 / 32 / 16)
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 64, 32, 32])
    latent: Literal["spatial", "global", "categorical"] = (
        "categorical"  # z map | z vector | one code
    )
    latent_channels: int = 8  # Z: channels of a Gaussian z, or codes of a categorical one
    latent_stride: int = 16  # stride of a spatial z map (a power of two, 4 .. 2 ** encoder_depth)
    hidden_channels: int = 32  # width of prior / recognition / generation nets
    # width of generation_net alone: with generation=full, what each code costs
    # per pixel (two products of this width per code and pixel; docs/RESULTS.md, "Speed", 2026-12-05:
    # 16 kept the shapes targets on validation at a quarter of 32's products)
    head_channels: int = 16
    logvar_min: float = -10.0  # bounds of every Gaussian log-variance (a sigmoid maps into them)
    logvar_max: float = 4.0
    # where z enters generation_net: at stride 4 (cheapest) or at full resolution (sharp); refine:
    # generation_net is a second U-Net stage refining y_hat from image features, y_hat and z (with
    # loss.objective=cnn: the same stage without a latent, a deterministic two-stage CNN)
    generation: Literal["quarter", "full", "refine"] = "full"
    refine_channels: int = 16  # generation=refine: width at stride 1 (x2 at stride 2, x4 at 4)
    # hidden layers of the generation head computed once per image before z enters (0 or 1): with
    # 1 a hypothesis (a code) costs one ReLU and one product to the logits per pixel instead of two
    # layers (generation quarter / full)
    shared_head_layers: int = 0
    # with shared_head_layers=1: the width of the head's layer z enters (0 = hidden_channels)
    code_channels: int = 0
    # latent=categorical: how n hypotheses draw their codes: systematic (each code floor or ceil of
    # n p(c|x) times: an unbiased, low-variance sample set) or independent (n iid draws)
    code_sampling: Literal["systematic", "independent"] = "systematic"
    # Model family (segcvae.registry: cnn, refine_cnn, sohn, prob_unet, ssn, or one registered by
    # a user). sohn: Sohn et al.'s CVAE, trained with loss.objective (cvae, gsnn, hybrid); every
    # other family has its own objective and ignores loss.objective.
    arch: str = "sohn"
    # Each family's own settings are a section of their own under model, named like the family
    # (model.prob_unet.latent_dim, model.ssn.rank, ...): the family declares them next to its code
    # (segcvae.settings; the docs' config reference lists them)

    selector: ClassVar[str] = "arch"
    kind: ClassVar[str] = "family"
    section: ClassVar[str] = "model"

    @staticmethod
    def group_names() -> list[str]:
        return family_names()

    @staticmethod
    def group_settings(name: str) -> type | None:
        return family_settings(name)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        _require(bool(self.encoder_name), "model.encoder_name", "an smp encoder name", "")
        names = family_names()
        _require(self.arch in names, "model.arch", f"one of {', '.join(names)}", self.arch)
        _require(
            3 <= self.encoder_depth <= 5, "model.encoder_depth", "3, 4 or 5", self.encoder_depth
        )
        _require(
            len(self.decoder_channels) == self.encoder_depth
            and all(c >= 1 for c in self.decoder_channels),
            "model.decoder_channels",
            f"{self.encoder_depth} positive integers (one per model.encoder_depth stage)",
            self.decoder_channels,
        )
        _require(
            self.shared_head_layers in (0, 1),
            "model.shared_head_layers",
            "0 or 1",
            self.shared_head_layers,
        )
        _require(
            self.code_channels >= 0, "model.code_channels", "an integer >= 0", self.code_channels
        )
        _require(
            self.code_channels == 0 or self.shared_head_layers == 1,
            "model.code_channels",
            "0 unless model.shared_head_layers=1 (the layer z enters after)",
            self.code_channels,
        )
        _require(
            self.head_channels >= 1, "model.head_channels", "an integer >= 1", self.head_channels
        )
        for key in ("latent_channels", "hidden_channels", "refine_channels"):
            v = getattr(self, key)
            _require(v >= 1, f"model.{key}", "an integer >= 1", v)
        strides = [2**k for k in range(2, self.encoder_depth + 1)]
        _require(
            self.latent_stride in strides,
            "model.latent_stride",
            f"one of {', '.join(map(str, strides))} (a power of two, 4 .. 2 ** model.encoder_depth)",
            self.latent_stride,
        )
        _require(
            self.logvar_min < self.logvar_max,
            "model.logvar_min",
            f"a number below model.logvar_max={self.logvar_max}",
            self.logvar_min,
        )
        self.check_groups()


@dataclass
class LossConfig:
    """Training objective (see ``segcvae.losses``)."""

    # model.arch=sohn: cvae, gsnn or hybrid. cnn (with model.arch=sohn) is the old spelling of
    # model.arch=cnn (or refine_cnn with model.generation=refine) and is read as such
    objective: Literal["cnn", "cvae", "gsnn", "hybrid"] = "cvae"
    alpha: float = 0.5  # hybrid: alpha * cvae + (1 - alpha) * gsnn
    scale_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # 1/4, 1/2, 1
    y_hat_weight: float = 0.5  # weight of the baseline's own NLL (keeps y_hat an initial guess)
    beta: float = 1.0  # KL weight after warm-up
    kl_warmup_steps: int = 300  # beta rises linearly from 0 over this many steps
    free_bits: float = 0.0  # nats per latent channel below which KL is not penalised
    # model.latent=categorical: q of the cvae term, the exact posterior over codes or recognition_net's
    code_posterior: Literal["exact", "recognition"] = "exact"
    # code_posterior=exact: q(c) proportional to r(c)^(1 / T) for the exact posterior r. 1 = r
    # itself (the ELBO is log p(y | x)); below 1 each mask trains its likeliest codes more (0: hard
    # EM, the one best code), which spreads the codes apart; still a bound on log p(y | x)
    code_temperature: float = 1.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        _require(0.0 <= self.alpha <= 1.0, "loss.alpha", "a number in [0, 1]", self.alpha)
        w = self.scale_weights
        _require(
            len(w) == 3 and all(v >= 0 and _finite(v) for v in w) and sum(w) > 0,
            "loss.scale_weights",
            "3 weights >= 0 (scales 1/4, 1/2, 1), not all 0",
            w,
        )
        for key in ("y_hat_weight", "beta", "free_bits"):
            v = getattr(self, key)
            _require(v >= 0 and _finite(v), f"loss.{key}", "a number >= 0", v)
        _require(self.kl_warmup_steps >= 0, "loss.kl_warmup_steps", ">= 0", self.kl_warmup_steps)
        t = self.code_temperature
        _require(0 <= t <= 1 and _finite(t), "loss.code_temperature", "a number in [0, 1]", t)
        _require(
            t == 1.0 or self.code_posterior == "exact",
            "loss.code_temperature",
            "1 with loss.code_posterior=recognition (it tempers the exact posterior)",
            t,
        )


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: int = 850  # optimiser steps of the run
    batch_size: int = 16  # images per step (per process under torchrun)
    lr: float = 2e-3  # Adam learning rate at step 0
    lr_decay: float = 1e-3  # lr_schedule=inverse: lr_t = lr / (1 + lr_decay * t), as in the paper
    # inverse: the paper's lr / (1 + lr_decay * t); cosine: lr * (1 + cos(pi * t / steps)) / 2
    lr_schedule: Literal["inverse", "cosine"] = "cosine"
    weight_decay: float = 0.0  # Adam (L2) weight decay
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    # Adam's fused kernel where the device has one (CPU with torch >= 2.4, CUDA), else multi-tensor
    # Adam; false: multi-tensor Adam always (the optimiser of runs before 2026-12-05)
    fused_adam: bool = True
    seed: int = 0  # seeds the weights, the data order, the raters drawn and the augmentation
    eval_every: int = 300  # validate every this many steps and at the end (0 = only at the end)
    log_every: int = 20  # write the training loss terms every this many steps
    checkpoint_every: int = 100  # write last.pt every this many steps and at each validation
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row
    # mixed precision: bf16 on CUDA or on a CPU with native bf16 (e.g. AVX512-BF16, AMX), fp16 on
    # CUDA; the generation head's per-pixel products and every loss stay float32
    amp: Literal["none", "bf16", "fp16"] = "none"
    # channels-last (NHWC) memory for the model and the images: on CPU (oneDNN) and CUDA the
    # convolutions and the generation head's per-pixel products run faster (docs/RESULTS.md, Speed)
    channels_last: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # --- multi-rater data (issue 12)
    # which mask of an item's "masks" is the training target: random = one rater per item per
    # step, drawn from (seed, step, item id); all = every rater (the image repeated once per rater;
    # a categorical latent scores all of an image's masks in one pass instead); auto = all for a
    # categorical latent (where it costs one pass), random for every other model
    rater: Literal["auto", "random", "all"] = "auto"
    # the validation metric that chooses best.pt (SELECT_METRICS: mean_iou, ged, nll, ...); a
    # distribution metric (ged) for stochastic models on multi-rater data
    select: str = "mean_iou"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        _require(self.steps >= 1, "train.steps", "an integer >= 1", self.steps)
        _require(self.batch_size >= 1, "train.batch_size", "an integer >= 1", self.batch_size)
        _require(self.lr > 0 and _finite(self.lr), "train.lr", "a number > 0", self.lr)
        for key in ("lr_decay", "weight_decay", "grad_clip"):
            v = getattr(self, key)
            _require(v >= 0 and _finite(v), f"train.{key}", "a number >= 0", v)
        _require(0 <= self.seed < 2**32, "train.seed", "an integer in 0 .. 2**32 - 1", self.seed)
        for key in ("eval_every", "log_every", "checkpoint_every"):
            v = getattr(self, key)
            _require(v >= 0, f"train.{key}", "an integer >= 0 (0 = off)", v)
        _require(self.max_bad_steps >= 1, "train.max_bad_steps", ">= 1", self.max_bad_steps)
        _require(
            self.select in SELECT_METRICS,
            "train.select",
            f"a validation metric, one of {', '.join(SELECT_METRICS)}",
            self.select,
        )
        _require(
            re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
            "train.device",
            "auto, cpu, cuda, cuda:N or mps",
            self.device,
        )


@dataclass
class EvalConfig:
    """Evaluation settings."""

    split: Literal["train", "val", "test"] = "val"  # the split validation reads
    batch_size: int = 16  # images per evaluation batch
    samples: int = 20  # S for the likelihood estimates (the paper: 50; the lfw/cub configs use 50)
    hypotheses: int = 8  # hypotheses for GED / Hungarian-matched IoU and sample grids
    omission: bool = False  # seeded block omission on the evaluation images
    omission_seed: int = 0  # seed of the evaluation omission squares
    max_images: int = 64  # 0 = the whole split
    num_vis: int = 4  # images in the validation sample grid
    # --- multi-rater metrics (issue 12)
    extra_ged_hypotheses: int = 0  # also report ged_<n> with n hypotheses (e.g. 100); 0 = off
    # many hypotheses are decoded this many at a time: bounds their memory at a large size
    sample_chunk: int = 16
    # how a hypothesis's class probabilities become its mask: mode (the likeliest class of each
    # pixel) or level_set (one uniform u per hypothesis shared by all its pixels: each pixel's
    # class is where the class CDF passes u, so every pixel is labelled as often as its
    # probability says and the mask is a level set of the probability map; segcvae.inference)
    hypothesis_masks: Literal["mode", "level_set"] = "mode"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        _require(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)
        _require(self.sample_chunk >= 1, "eval.sample_chunk", "an integer >= 1", self.sample_chunk)
        for key, meaning in (
            ("samples", "0 = no likelihood"),
            ("hypotheses", "0 = none"),
            ("max_images", "0 = the whole split"),
            ("num_vis", "0 = no sample grid"),
        ):
            v = getattr(self, key)
            _require(v >= 0, f"eval.{key}", f"an integer >= 0 ({meaning})", v)


__all__ = [
    "HYPOTHESIS_METRICS",
    "LIKELIHOOD_METRICS",
    "SELECT_METRICS",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
]
