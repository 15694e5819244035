"""Experiment configuration: a small tree of dataclasses, read from one flat YAML per experiment.

A YAML file has up to five sections (``data``, ``model``, ``loss``, ``train``, ``eval``), each a flat
mapping of keys to values. Command-line overrides use dotted keys (``train.lr=1e-3``). An unknown
section or key, or a value of the wrong type, raises :class:`ConfigError` naming the key and listing
the valid ones.

Example:
    >>> cfg = Config.from_yaml("configs/lfw_hybrid.yaml", ["train.steps=100"])
    >>> cfg.loss.objective
    'hybrid'
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    """Which dataset to read and how to transform it (see ``segcvae.data``).

    Dataset-specific keys are prefixed with the dataset's name (``cub_*``, ``folder_*``, ``shapes_*``).
    """

    name: Literal["shapes", "lfw", "cub", "folder", "qubiq"] = "shapes"
    root: str = ""  # dataset root (unused by shapes)
    image_size: int = 64  # images and masks are resized to image_size x image_size
    hflip: bool = True  # random horizontal flip in training
    omission_max: float = 0.4  # block omission: max side as a fraction of the image side; 0 = off
    omission_p: float = 1.0  # probability of applying block omission to a training image
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    num_workers: int = 0
    on_bad_sample: Literal["error", "skip"] = "error"  # skipped items are counted and logged
    ignore_index: int = 255  # mask value excluded from losses and metrics (0..255)
    # RGB label masks (lfw, folder with a palette)
    colour_tolerance: int = 0  # max per-channel distance to a label colour (0 = exact colours only)
    # lfw
    lfw_masks: str = ""  # extracted label folder; "" = <root>/parts_lfw_funneled_gt_images
    # cub
    cub_classes: list[int] | None = None  # class ids to use (1-200); None = all listed classes
    cub_segmentations: str = ""  # <class>/<stem>.png masks; "" = <root>/segmentations
    cub_crop: bool = False  # crop to the bounding box
    cub_crop_margin: float = 0.1  # margin around the box, as a fraction of its size
    cub_mask_threshold: int = 128  # foreground = segmentation value >= threshold
    cub_val_ratio: float = 0.1  # val = this seeded (split_seed) fraction of the official train list
    # folder
    folder_images: str = "images"  # sub-folder of root with the images
    folder_masks: str = "masks"  # sub-folder of root with the masks (matched by file stem)
    folder_palette: list[list[int]] | None = None  # RGB colour per class; None = index masks
    folder_classes: list[str] | None = None  # class names (index masks need them); None = class_k
    folder_splits: str = ""  # folder with train.txt / val.txt / test.txt (stems); "" = random
    folder_val_ratio: float = 0.1
    folder_test_ratio: float = 0.1
    split_seed: int = 0  # seed of the random folder split and of the cub val draw
    # shapes
    shapes_train_size: int = 2000
    shapes_val_size: int = 200
    shapes_test_size: int = 200
    shapes_classes: int = 3  # object classes (1-8), plus background
    shapes_completions: int = 3  # M plausible amodal masks per image
    shapes_difficulty: float = 0.5  # 0..1: how much of each object the occluder may hide
    shapes_seed: int = 0
    # --- multi-rater and binary masks (issue 12; folder and qubiq, see datasets/folder/README.md)
    # single-channel masks -> class 1 where value >= threshold, else 0 (0/255 PNGs, JPEG masks);
    # None = masks hold class indices
    binary_threshold: int | None = None
    # folder layout: pairs = images/<stem> + masks/<stem>.png (one mask per image);
    # per_image = <root>/<item>/ holds the image and its rater masks (patterns below);
    # per_rater = images/<stem> + masks/<rater>/<stem>.png (any number of raters per image)
    folder_layout: Literal["pairs", "per_image", "per_rater"] = "pairs"
    folder_image_pattern: str = "image.*"  # per_image: glob of the image file in an item folder
    folder_mask_pattern: str = "*seg*"  # per_image: glob of the rater mask files


@dataclass
class ModelConfig:
    """Network sizes; which sub-networks exist follows from ``loss.objective``."""

    encoder_name: str = "resnet18"  # any segmentation_models_pytorch encoder name
    encoder_depth: int = 5
    encoder_weights: str | None = None  # e.g. "imagenet"; None = random init, no download
    decoder_channels: list[int] = field(default_factory=lambda: [128, 64, 32, 32, 16])
    latent: Literal["spatial", "global"] = "spatial"  # a z map at latent_stride | one z vector
    latent_channels: int = 32
    latent_stride: int = 16
    hidden_channels: int = 64  # width of prior / recognition / generation nets
    logvar_min: float = -10.0
    logvar_max: float = 4.0


@dataclass
class LossConfig:
    """Training objective (see ``segcvae.losses``)."""

    objective: Literal["cnn", "cvae", "gsnn", "hybrid"] = "hybrid"
    alpha: float = 0.5  # hybrid: alpha * cvae + (1 - alpha) * gsnn
    scale_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # 1/4, 1/2, 1
    y_hat_weight: float = 0.5  # weight of the baseline's own NLL (keeps y_hat an initial guess)
    beta: float = 1.0  # KL weight after warm-up
    kl_warmup_steps: int = 300  # beta rises linearly from 0 over this many steps
    free_bits: float = 0.0  # nats per latent channel below which KL is not penalised


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    lr_decay: float = 1e-3  # lr_t = lr / (1 + lr_decay * t), as in the paper
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    seed: int = 0
    eval_every: int = 300
    log_every: int = 20
    checkpoint_every: int = 100
    max_bad_steps: int = 10  # stop after this many non-finite losses in a row
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only
    channels_last: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # --- multi-rater data (issue 12)
    # which mask of an item's "masks" is the training target: random = one rater per item per
    # step, drawn from (seed, step, item id); all = every rater (the image repeated once per rater)
    rater: Literal["random", "all"] = "random"


@dataclass
class EvalConfig:
    """Evaluation settings."""

    split: Literal["train", "val", "test"] = "val"
    batch_size: int = 16
    samples: int = 20  # S for the likelihood estimates (the paper: 50; the lfw/cub configs use 50)
    hypotheses: int = 8  # hypotheses for GED / Hungarian-matched IoU and sample grids
    omission: bool = False  # seeded block omission on the evaluation images
    omission_seed: int = 0
    max_images: int = 64  # 0 = the whole split
    num_vis: int = 4  # images in the validation sample grid
    # --- multi-rater metrics (issue 12)
    extra_ged_hypotheses: int = 0  # also report ged_<n> with n hypotheses (e.g. 100); 0 = off


@dataclass
class Config:
    """The whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, source: str = "config") -> Config:
        """Build a config from nested plain data, validating every key and type."""
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(
                f"{source}: unknown section {unknown[0]!r}; valid sections: {sorted(sections)}"
            )
        kwargs = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            values = raw.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping")
            kwargs[name] = _build_section(section_cls, values, f"{source}: {name}")
        return cls(**kwargs)

    @classmethod
    def from_yaml(
        cls, path: str | Path | None = None, overrides: list[str] | None = None
    ) -> Config:
        """Read a YAML file (or the defaults when ``path`` is None) and apply dotted overrides."""
        raw: dict[str, Any] = {}
        source = "defaults"
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            with open(path) as fh:
                raw = yaml.safe_load(fh) or {}
            source = str(path)
        raw = apply_overrides(raw, overrides or [])
        return cls.from_dict(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested data (safe for YAML, JSON and ``torch.load(weights_only=True)``)."""
        return asdict(self)

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config."""
        with open(path, "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (a leading ``--`` is allowed); values are YAML."""
    raw = {k: dict(v or {}) for k, v in raw.items()} if raw else {}
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, value = text.split("=", 1)
        section, name = key.split(".", 1)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"override {item!r}: section {section!r} is not a mapping")
        raw[section][name] = yaml.safe_load(value) if value != "" else ""
    return raw


def _build_section(section_cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(section_cls)
    valid = [f.name for f in fields(section_cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}")
    return section_cls(**kwargs)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(
                f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: expected {_name(tp)}, got {value!r}"
        )
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def config_from_checkpoint(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from the plain data stored in a checkpoint."""
    return Config.from_dict(data, "checkpoint config")


__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_checkpoint",
]
