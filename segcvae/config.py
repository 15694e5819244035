"""Experiment configuration: a small tree of dataclasses, read from one flat YAML per experiment.

A YAML file has up to five sections (``data``, ``model``, ``loss``, ``train``, ``eval``), each a flat
mapping of keys to values. Command-line overrides use dotted keys (``train.lr=1e-3``). An unknown
section or key, or a value of the wrong type, raises :class:`ConfigError` naming the key and listing
the valid ones; so does a value out of its range (``train.lr=-1``, an ``image_size`` the encoder
cannot take), checked by each section's ``validate`` when the config loads, before any data is read.

Composition (mmseg's ``_base_``, one level): a YAML may name the files it extends with a top-level
``_base_: [a.yaml, b.yaml]`` (or one file; paths relative to the YAML's folder) and state only what
it is about. Small named bases say one thing each (a dataset, a model size, a schedule:
``configs/_base_/``); they are merged in order, may not contradict each other, and the YAML's own
sections are merged key by key over them. A base that itself has a ``_base_`` is an error, so
every experiment is at most two files deep.

Example:
    >>> cfg = Config.from_yaml("configs/lfw_hybrid.yaml", ["train.steps=100"])
    >>> cfg.loss.objective
    'hybrid'
"""

from __future__ import annotations

import logging
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from segcvae.registry import family_names, family_settings
from segcvae.settings import SettingsError, check_settings

log = logging.getLogger("segcvae")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


BASE_KEY = "_base_"


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise ConfigError ``"<key>: expected <expected>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _finite(value: float) -> bool:
    return math.isfinite(value)


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


# data.augment: the training augmentation's parts (segcvae.data.transforms builds them, in this
# order) and the named presets, each a list of parts.
AUGMENT_PARTS = ("hflip", "vflip", "affine", "elastic", "intensity")
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "flip": ("hflip",),
    "geometric": ("hflip", "affine"),
    "mri": ("hflip", "affine", "elastic", "intensity"),
}


def augment_parts(augment: str | list[str], hflip: bool = False) -> list[str]:
    """The parts ``data.augment`` names (presets expanded), plus ``hflip`` when ``data.hflip``.

    Args:
        augment: A preset or part name, or a list of them.
        hflip: ``data.hflip``: the horizontal flip is on whatever ``augment`` says.

    Returns:
        The distinct parts, in :data:`AUGMENT_PARTS` order.

    Raises:
        ConfigError: An unknown name (the message lists the presets and the parts).
    """
    names = [augment] if isinstance(augment, str) else list(augment)
    wanted = {"hflip"} if hflip else set()
    for name in names:
        if name in AUGMENT_PRESETS:
            wanted.update(AUGMENT_PRESETS[name])
        elif name in AUGMENT_PARTS:
            wanted.add(name)
        else:
            raise ConfigError(
                f"data.augment: expected a preset ({', '.join(AUGMENT_PRESETS)}) or a list of "
                f"presets and parts ({', '.join(AUGMENT_PARTS)}), got {name!r}"
            )
    return [p for p in AUGMENT_PARTS if p in wanted]


ShapesAmbiguity = Literal["nested", "exclusive", "independent", "flip", "mixed"]


@dataclass
class DataConfig:
    """Which dataset to read and how to transform it (see ``segcvae.data``).

    Dataset-specific keys are prefixed with the dataset's name (``cub_*``, ``folder_*``, ``shapes_*``,
    ``lesions_*``).
    """

    name: Literal["shapes", "lfw", "cub", "folder", "qubiq", "lesions"] = "shapes"  # the dataset
    root: str = ""  # dataset root (unused by shapes and lesions)
    image_size: int = 64  # images and masks are resized to image_size x image_size
    hflip: bool = True  # random horizontal flip in training (the part hflip of data.augment)
    # training augmentation, moving the image and every rater mask together (docs/training.md):
    # a preset, none | flip (hflip) | geometric (hflip, affine) | mri (hflip, affine,
    # elastic, intensity), or a list of presets and parts (hflip, vflip, affine, elastic,
    # intensity), e.g. [geometric, intensity]. Masks: nearest neighbour; pixels moved in from
    # outside the image are 0 in the image and data.ignore_index in the masks. data.hflip=true
    # adds hflip whatever this says.
    augment: str | list[str] = "none"
    omission_max: float = 0.4  # block omission: max side as a fraction of the image side; 0 = off
    omission_p: float = 1.0  # probability of applying block omission to a training image
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # RGB normalisation
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])  # (x - mean) / std
    num_workers: int = 0  # DataLoader worker processes (0 = load in the main process)
    on_bad_sample: Literal["error", "skip"] = "error"  # skipped items are counted and logged
    ignore_index: int = 255  # mask value excluded from losses and metrics (0..255)
    # RGB label masks (lfw, folder with a palette)
    colour_tolerance: int = 0  # max per-channel distance to a label colour (0 = exact colours only)
    # lfw
    lfw_masks: str = (
        ""  # extracted label folder; "" = under root (the .tgz is extracted to a cache)
    )
    # known joint ambiguity (issue 33; datasets/lfw/README.md, "Flipped classes"): class name ->
    # probability that all its pixels become <name>_alt, independently per class (Kohl et al.
    # 2018's Cityscapes recipe), e.g. {hair: 0.4706, skin: 0.2941}; {} = the labels as they are
    lfw_flips: dict[str, float] = field(default_factory=dict)
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
    folder_val_ratio: float = 0.1  # share of the items in val when no split says
    folder_test_ratio: float = 0.1  # share of the items in test when no split says
    split_seed: int = 0  # seed of the random folder split and of the cub val draw
    # shapes
    shapes_train_size: int = 2000  # images per split (rendered from the seed and the index)
    shapes_val_size: int = 200
    shapes_test_size: int = 200
    shapes_classes: int = 3  # object classes (1-8), plus background
    shapes_completions: int = 3  # M plausible amodal masks per image
    shapes_difficulty: float = 0.5  # 0..1: how much of each object the occluder may hide
    shapes_seed: int = 0  # seed of the rendering: the same seed gives the same images
    # the kind of ambiguity (datasets/shapes/README.md): nested = one bar under a band, M equally
    # likely hidden lengths (shapes_completions, shapes_difficulty); exclusive = an arm under
    # exactly one of 2-3 patches; independent = 2-3 bars each under its own patch, lengths chosen
    # independently (up to 27 joint masks); flip = 2-3 objects whose class is one of two,
    # independently; mixed = each item one of these. All but nested carry mask_probs.
    shapes_ambiguity: ShapesAmbiguity = "nested"
    # lesions (issue 22): embedded faint findings that some raters mark and others leave empty
    # (datasets/lesions/README.md); the image sets how many of the raters mark its finding
    lesions_train_size: int = 2000  # images per split
    lesions_val_size: int = 200
    lesions_test_size: int = 200
    lesions_raters: int = 4  # R rater masks per image (the share of empty raters moves by 1/R)
    lesions_seed: int = 0  # seed of the rendering
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
    # --- data as it is published (issues 25, 26; datasets/folder/README.md)
    # one sub-folder of root per split, e.g. {train: training, test: testing}, each in the layout
    # above; a split not named is carved from train by folder_val_ratio / folder_test_ratio
    folder_split_dirs: dict[str, str] | None = None
    mask_resize: bool = False  # resize a mask of another size than its image to it (nearest)
    # NIfTI (.nii, .nii.gz; pip install -e ".[medical]"): 3D volumes are sliced along this axis
    # (0, 1, 2 = x, y, z), one item per slice; all slices, or those where a rater marked foreground
    nifti_axis: int = 2
    nifti_slices: Literal["all", "foreground"] = "all"  # foreground: only slices a rater marked
    # per file: percentile = clip to the 0.5 / 99.5 percentiles, scale to [0, 1]; minmax = scale
    # min..max to [0, 1]; none = already 8-bit (0..255); then x255 -> uint8 (segcvae/data/nifti.py)
    nifti_intensity: Literal["percentile", "minmax", "none"] = "percentile"
    # --- k-fold cross-validation over items (segcvae crossval; segcvae/data/folds.py): with
    # cv_folds = k >= 2 the items of every split are pooled and dealt into k folds in a seeded
    # order (cv_seed); test = fold cv_fold, val = a seeded cv_val_ratio of the other folds' items,
    # train = the rest. The slices of one volume stay in one fold. 0 = the dataset's own splits.
    cv_folds: int = 0  # k; 0 = the dataset's own splits
    cv_fold: int = 0  # the test fold, 0 .. k - 1
    cv_seed: int = 0  # seed of the deal into folds
    cv_val_ratio: float = 0.15  # share of the other folds' items used for validation

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        _require(self.image_size >= 1, "data.image_size", "a positive integer", self.image_size)
        _require(
            self.cv_folds == 0 or self.cv_folds >= 2,
            "data.cv_folds",
            "0 (the dataset's own splits) or a number of folds >= 2",
            self.cv_folds,
        )
        if self.cv_folds:
            _require(
                0 <= self.cv_fold < self.cv_folds,
                "data.cv_fold",
                f"0 .. {self.cv_folds - 1} (data.cv_folds={self.cv_folds})",
                self.cv_fold,
            )
        _require(
            0.0 < self.cv_val_ratio < 1.0,
            "data.cv_val_ratio",
            "a number in (0, 1)",
            self.cv_val_ratio,
        )
        augment_parts(self.augment)  # raises naming data.augment and the valid names
        for key in ("omission_max", "omission_p", "shapes_difficulty"):
            v = getattr(self, key)
            _require(0.0 <= v <= 1.0, f"data.{key}", "a number in [0, 1]", v)
        for key in ("mean", "std"):
            v = getattr(self, key)
            _require(len(v) == 3, f"data.{key}", "3 numbers (R, G, B)", v)
        _require(all(s > 0 for s in self.std), "data.std", "positive numbers", self.std)
        _require(self.num_workers >= 0, "data.num_workers", "an integer >= 0", self.num_workers)
        for key in ("ignore_index", "colour_tolerance", "cub_mask_threshold"):
            v = getattr(self, key)
            _require(0 <= v <= 255, f"data.{key}", "an integer in 0..255", v)
        if self.cub_classes is not None:
            bad = [c for c in self.cub_classes if not 1 <= c <= 200]
            _require(
                bool(self.cub_classes) and not bad,
                "data.cub_classes",
                "null or a non-empty list of class ids 1..200",
                self.cub_classes,
            )
        lfw_classes = ("background", "skin", "hair")  # segcvae.data.lfw.CLASS_NAMES
        bad_flips = {
            c: p
            for c, p in self.lfw_flips.items()
            if c not in lfw_classes or not (_finite(p) and 0.0 < p < 1.0)
        }
        _require(
            not bad_flips,
            "data.lfw_flips",
            "a mapping of LFW classes (background, skin, hair) to probabilities in (0, 1), e.g. "
            "{hair: 0.4706, skin: 0.2941}",
            bad_flips,
        )
        _require(self.cub_crop_margin >= 0, "data.cub_crop_margin", ">= 0", self.cub_crop_margin)
        for key in ("cub_val_ratio", "folder_val_ratio", "folder_test_ratio"):
            v = getattr(self, key)
            _require(0.0 <= v < 1.0, f"data.{key}", "a number in [0, 1)", v)
        if self.folder_palette is not None:
            bad = [
                c for c in self.folder_palette if len(c) != 3 or not all(0 <= v <= 255 for v in c)
            ]
            _require(
                bool(self.folder_palette) and not bad,
                "data.folder_palette",
                "a non-empty list of [R, G, B] colours in 0..255",
                bad or self.folder_palette,
            )
            colours = [tuple(c) for c in self.folder_palette]
            _require(
                len(set(colours)) == len(colours),
                "data.folder_palette",
                "one distinct colour per class",
                self.folder_palette,
            )
            if self.folder_classes is not None:
                _require(
                    len(self.folder_classes) == len(self.folder_palette),
                    "data.folder_classes",
                    f"one name per data.folder_palette colour ({len(self.folder_palette)})",
                    self.folder_classes,
                )
        if self.folder_classes is not None:
            _require(
                1 <= len(self.folder_classes) <= 255,
                "data.folder_classes",
                "1 to 255 class names",
                self.folder_classes,
            )
        if self.name == "folder":
            _require(
                self.folder_palette is not None
                or self.folder_classes is not None
                or self.binary_threshold is not None,
                "data.folder_classes",
                "class names for index masks (or data.folder_palette for RGB masks, or "
                "data.binary_threshold for binary masks) with data.name=folder",
                None,
            )
        if self.folder_split_dirs is not None:
            dirs = self.folder_split_dirs
            _require(
                "train" in dirs
                and set(dirs) <= {"train", "val", "test"}
                and all(isinstance(d, str) and d for d in dirs.values()),
                "data.folder_split_dirs",
                "a mapping of train (required), val, test to sub-folders of data.root, e.g. "
                "{train: training, test: testing}",
                dirs,
            )
            _require(
                not self.folder_splits,
                "data.folder_splits",
                '"" with data.folder_split_dirs (split folders and split list files exclude '
                "each other)",
                self.folder_splits,
            )
        _require(
            self.nifti_axis in (0, 1, 2), "data.nifti_axis", "0, 1 or 2 (x, y, z)", self.nifti_axis
        )
        for key in (
            "shapes_train_size",
            "shapes_val_size",
            "shapes_test_size",
            "lesions_train_size",
            "lesions_val_size",
            "lesions_test_size",
            "lesions_raters",
        ):
            v = getattr(self, key)
            _require(v >= 1, f"data.{key}", "an integer >= 1", v)
        if self.name == "lesions":
            _require(
                self.image_size >= 32,
                "data.image_size",
                "an integer >= 32 with data.name=lesions (the smallest finding is 0.04 x the side)",
                self.image_size,
            )
        _require(1 <= self.shapes_classes <= 8, "data.shapes_classes", "1..8", self.shapes_classes)
        _require(
            self.shapes_completions >= 1, "data.shapes_completions", ">= 1", self.shapes_completions
        )
        if self.name == "shapes" and self.shapes_ambiguity in ("independent", "flip", "mixed"):
            _require(
                self.shapes_classes >= 2,
                "data.shapes_classes",
                f">= 2 with data.shapes_ambiguity={self.shapes_ambiguity}",
                self.shapes_classes,
            )


@dataclass
class ModelConfig:
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

    def __post_init__(self) -> None:
        self._settings: dict[str, Any] = {}  # family name -> its settings dataclass instance

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: model.<family> is that family's settings
        if not name.startswith("_") and name in family_names():
            return self.settings(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self, family: str | None = None) -> Any:
        """The settings of ``family`` (default ``model.arch``): what the config gave, else the
        family's defaults; None for a family without settings."""
        family = family or self.arch
        if family not in self._settings:
            cls = family_settings(family)
            if cls is None:
                return None
            self._settings[family] = cls()
        return self._settings[family]

    def set_settings(self, family: str, value: Any) -> None:
        """Give ``family`` these settings (a dataclass instance of its settings class)."""
        self._settings[family] = value

    def settings_dict(self) -> dict[str, dict[str, Any]]:
        """The settings given or used so far, ``{family: {key: value}}`` (for to_dict)."""
        return {name: asdict(value) for name, value in self._settings.items()}

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
        self.settings()  # the family's own settings appear in the resolved config
        for name, value in self._settings.items():
            try:
                check_settings(value, f"model.{name}")
            except SettingsError as e:
                raise ConfigError(str(e)) from None


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
        """Build a config from nested plain data, checking every key, type and range.

        Args:
            raw: ``{section: {key: value}}``; missing sections and keys keep their defaults.
            source: Named in error messages (a file name, "checkpoint config", ...).

        Raises:
            ConfigError: ``"<source>: <section>.<key>: expected ..., got ..."``.
        """
        cfg = cls._build(raw, source)
        _read_legacy_keys(cfg, source)
        try:
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        return cfg

    @classmethod
    def _build(cls, raw: dict[str, Any] | None, source: str) -> Config:
        """Keys and types only (no range checks): also used for a ``_base_`` file alone."""
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
        raw = _nest_legacy_family_keys(raw, source)
        sections = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            hint = f" ({BASE_KEY} is read from YAML files only)" if unknown[0] == BASE_KEY else ""
            raise ConfigError(
                f"{source}: unknown section {unknown[0]!r}; valid sections: {sorted(sections)}"
                + hint
            )
        kwargs = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            values = raw.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping")
            kwargs[name] = _build_section(section_cls, values, f"{source}: {name}")
        return cls(**kwargs)

    def validate(self) -> None:
        """Check every value's range, and the settings that depend on each other.

        Called by :meth:`from_dict` (so by :meth:`from_yaml` and when a checkpoint is read); call
        it yourself after changing a config in code.

        Raises:
            ConfigError: naming the first key out of range and what is allowed.
        """
        for section in (self.data, self.model, self.loss, self.train, self.eval):
            section.validate()
        select = self.train.select
        if select in HYPOTHESIS_METRICS:
            _require(
                self.eval.hypotheses > 0,
                "eval.hypotheses",
                f"> 0 (train.select={select} is computed from hypotheses)",
                self.eval.hypotheses,
            )
        if select in LIKELIHOOD_METRICS:
            _require(
                self.eval.samples > 0,
                "eval.samples",
                f"> 0 (train.select={select} is a likelihood)",
                self.eval.samples,
            )
        stride = 2**self.model.encoder_depth
        _require(
            self.data.image_size % stride == 0,
            "data.image_size",
            f"a multiple of {stride} (2 ** model.encoder_depth={self.model.encoder_depth}: the "
            f"encoder halves the image {self.model.encoder_depth} times), e.g. "
            f"{max(stride, round(self.data.image_size / stride) * stride)}",
            self.data.image_size,
        )

    @classmethod
    def from_yaml(
        cls, path: str | Path | None = None, overrides: list[str] | None = None
    ) -> Config:
        """Read a YAML file (or the defaults when ``path`` is None) and apply dotted overrides.

        A top-level ``_base_`` (a file, or a list of files, relative to the file's folder) names
        the bases this file extends; their sections are merged key by key under this file's.
        """
        raw: dict[str, Any] = {}
        source = "defaults"
        if path is not None:
            path = Path(path)
            raw = _read_yaml(path)
            source = str(path)
            names = raw.pop(BASE_KEY, None)
            if names is not None:
                base, base_paths = _read_bases(path, names)
                cls._build(raw, str(path))  # an unknown key in this file names this file
                raw = _merge(base, raw)
                source = f"{path} (bases {', '.join(p.name for p in base_paths)})"
        if overrides:
            source = "command line" if path is None else f"{source} + command line"
        raw = apply_overrides(raw, overrides or [])
        return cls.from_dict(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested data (safe for YAML, JSON and ``torch.load(weights_only=True)``); the
        model section holds the family settings given or used (``model: {ssn: {rank: 10}}``)."""
        out = asdict(self)
        out["model"].update(self.model.settings_dict())
        return out

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config."""
        with open(path, "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


#: Family settings that were flat ``model`` keys before each family declared its own (2026-12-07):
#: old key -> (family, setting). Configs and checkpoints written before keep loading.
LEGACY_FAMILY_KEYS: dict[str, tuple[str, str]] = {
    "prob_unet_latent_dim": ("prob_unet", "latent_dim"),
    "prob_unet_fcomb_layers": ("prob_unet", "fcomb_layers"),
    "ssn_rank": ("ssn", "rank"),
    "ssn_mc_samples": ("ssn", "mc_samples"),
    "ssn_epsilon": ("ssn", "epsilon"),
}


def _nest_legacy_family_keys(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``model.ssn_rank: 5`` -> ``model.ssn.rank: 5`` (:data:`LEGACY_FAMILY_KEYS`); a value
    stated both ways must agree."""
    model = raw.get("model")
    if not isinstance(model, dict) or not any(k in LEGACY_FAMILY_KEYS for k in model):
        return raw
    model = dict(model)
    for old, (family, key) in LEGACY_FAMILY_KEYS.items():
        if old not in model:
            continue
        value = model.pop(old)
        section = model.get(family)
        section = dict(section) if isinstance(section, dict) else {}
        if key in section and section[key] != value:
            raise ConfigError(
                f"{source}: model.{old} ({value!r}) and model.{family}.{key} ({section[key]!r}) "
                f"disagree; write model.{family}.{key} only"
            )
        section.setdefault(key, value)
        model[family] = section
        log.debug("%s: model.%s is read as model.%s.%s", source, old, family, key)
    return {**raw, "model": model}


def _read_legacy_keys(cfg: Config, source: str) -> None:
    """Read settings written before the family registry as what they mean now (with a warning).

    ``model.arch=sohn`` with ``loss.objective=cnn`` was the baseline CNN (or, with
    ``model.generation=refine``, the two-stage CNN): now ``model.arch=cnn`` (``refine_cnn``).
    Checkpoints written before keep loading.
    """
    if cfg.model.arch == "sohn" and cfg.loss.objective == "cnn":
        arch = "refine_cnn" if cfg.model.generation == "refine" else "cnn"
        log.warning(
            "%s: loss.objective=cnn with model.arch=sohn is read as model.arch=%s (the CNN is a "
            "family of its own now; write model.arch: %s)",
            source,
            arch,
            arch,
        )
        cfg.model.arch = arch


def check_encoder_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``model.encoder_name`` names an smp (or ``tu-`` timm) encoder.

    Not part of :meth:`Config.validate`, because it imports smp (seconds); the trainer and
    ``model_from_checkpoint`` call it before building a model.
    """
    import segmentation_models_pytorch as smp

    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            raise ConfigError(
                f"model.encoder_name: timm has no model {name[3:]!r} (tu-<name> takes a timm model "
                f"name, e.g. tu-resnet18), got {name!r}"
            )
        return
    names = smp.encoders.get_encoder_names()
    if name not in names:
        close = [n for n in names if n.startswith(name[:4])][:8]
        raise ConfigError(
            f"model.encoder_name: expected an smp encoder name (e.g. {', '.join(close or names[:8])}; "
            f"{len(names)} in all, or tu-<timm model>), got {name!r}"
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(
            f"config {path} is a folder; expected a YAML file such as configs/lfw_hybrid.yaml"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def _read_bases(path: Path, names: Any) -> tuple[dict[str, Any], list[Path]]:
    """The bases a config names (``_base_``: a file or a list of files relative to its folder),
    merged in order.

    A base has no base of its own, and two bases may not set the same key to different values
    (each says one thing: a dataset, a model size, a schedule); the config itself overrides any.

    Returns:
        The merged sections and the base paths.
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{path}: {BASE_KEY}: expected a file name or a list of file names, got {names!r}"
        )
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, str], Path] = {}
    paths = []
    for name in names:
        base_path = path.parent / name
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY}: base config not found: {base_path}")
        base = _read_yaml(base_path)
        if BASE_KEY in base:
            raise ConfigError(
                f"{path}: {BASE_KEY}: {base_path} has a {BASE_KEY} of its own; a base is one "
                "level deep (name both files in this config's list instead)"
            )
        Config._build(base, str(base_path))  # an unknown key in the base names the base
        for section, values in base.items():
            for key, value in (values or {}).items():
                first = origin.setdefault((section, key), base_path)
                if first != base_path and merged[section][key] != value:
                    raise ConfigError(
                        f"{path}: {BASE_KEY}: {section}.{key} is set by both {first} "
                        f"({merged[section][key]!r}) and {base_path} ({value!r}); set it in one "
                        "base, or in this config"
                    )
        merged = _merge(merged, base)
        paths.append(base_path)
    return merged, paths


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Sections of ``child`` merged key by key over those of ``base`` (one level: sections are flat)."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in child.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            for key, value in values.items():  # a family's settings merge key by key too
                old = merged[section].get(key)
                if isinstance(value, dict) and isinstance(old, dict) and key in family_names():
                    merged[section][key] = {**old, **value}
                else:
                    merged[section][key] = value
        else:
            merged[section] = values
    return merged


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (a leading ``--`` is allowed); values are YAML."""
    raw = {k: dict(v or {}) for k, v in raw.items()} if raw else {}
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, value = text.split("=", 1)
        section, *path, name = key.split(".")
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {item!r}: section {section!r} is not a mapping")
        for part in path:  # model.ssn.rank=5: the family's settings
            target[part] = dict(target[part]) if isinstance(target.get(part), dict) else {}
            target = target[part]
        target[name] = yaml.safe_load(value) if value != "" else ""
    return raw


def _build_section(section_cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(section_cls)
    valid = [f.name for f in fields(section_cls)]
    families = family_names() if section_cls is ModelConfig else []
    kwargs, settings = {}, {}
    for key, value in values.items():
        if key in families:
            settings[key] = _build_settings(key, value, f"{where}.{key}")
            continue
        if key not in hints:
            more = f"; a family's settings: model.<{'|'.join(families)}>" if families else ""
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}{more}")
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}")
    section = section_cls(**kwargs)
    for name, value in settings.items():
        section.set_settings(name, value)
    return section


def _build_settings(family: str, values: Any, where: str) -> Any:
    """A family's settings dataclass from ``model.<family>``'s mapping (types checked)."""
    cls = family_settings(family)
    if cls is None:
        raise ConfigError(f"{where}: the family {family!r} has no settings of its own")
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of {family}'s settings, got {values!r}")
    return _build_section(cls, values, where)


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
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: expected a mapping of {_name(key_tp)} to {_name(value_tp)} "
                f"({{key: value, ...}}), got {value!r}"
            )
        return {
            _check_type(k, key_tp, f"{where} (key {k!r})"): _check_type(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
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


__all__ = [
    "SELECT_METRICS",
    "AUGMENT_PARTS",
    "AUGMENT_PRESETS",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "ShapesAmbiguity",
    "TrainConfig",
    "LEGACY_FAMILY_KEYS",
    "apply_overrides",
    "augment_parts",
    "check_encoder_name",
]
