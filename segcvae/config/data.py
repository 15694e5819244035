"""The ``data`` section: which dataset, and what every dataset shares.

A dataset's own settings live with its code (``segcvae/data/<name>.py``, e.g. ``ShapesSettings``)
and are read from ``data.<name>`` (``data: {name: shapes, shapes: {ambiguity: flip}}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from segcvae.config.checks import ConfigError, require
from segcvae.config.groups import SettingsGroups

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


@dataclass(eq=False)
class DataConfig(SettingsGroups):
    """Which dataset to read and how to transform it (see ``segcvae.data``).

    A dataset's own settings are a section of their own under data, named like the dataset
    (``data.shapes.train_size``, ``data.folder.layout``, ...): the dataset declares them next to
    its code (``segcvae.data.registry``; the docs' config reference lists them).
    """

    # the dataset (segcvae.data.registry: shapes, lfw, cub, folder, qubiq, lesions, or one
    # registered by a user)
    name: str = "shapes"
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
    split_seed: int = 0  # seed of the random folder split and of the cub val draw
    # --- k-fold cross-validation over items (segcvae crossval; segcvae/data/folds.py): with
    # cv_folds = k >= 2 the items of every split are pooled and dealt into k folds in a seeded
    # order (cv_seed); test = fold cv_fold, val = a seeded cv_val_ratio of the other folds' items,
    # train = the rest. The slices of one volume stay in one fold. 0 = the dataset's own splits.
    cv_folds: int = 0  # k; 0 = the dataset's own splits
    cv_fold: int = 0  # the test fold, 0 .. k - 1
    cv_seed: int = 0  # seed of the deal into folds
    cv_val_ratio: float = 0.15  # share of the other folds' items used for validation

    selector: ClassVar[str] = "name"
    kind: ClassVar[str] = "dataset"
    section: ClassVar[str] = "data"

    @staticmethod
    def group_names() -> list[str]:
        from segcvae.data.registry import dataset_names

        return dataset_names()

    @staticmethod
    def group_settings(name: str) -> type | None:
        from segcvae.data.registry import dataset_settings

        return dataset_settings(name)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first key outside its allowed range."""
        names = self.group_names()
        require(self.name in names, "data.name", f"one of {', '.join(names)}", self.name)
        require(self.image_size >= 1, "data.image_size", "a positive integer", self.image_size)
        require(
            self.cv_folds == 0 or self.cv_folds >= 2,
            "data.cv_folds",
            "0 (the dataset's own splits) or a number of folds >= 2",
            self.cv_folds,
        )
        if self.cv_folds:
            require(
                0 <= self.cv_fold < self.cv_folds,
                "data.cv_fold",
                f"0 .. {self.cv_folds - 1} (data.cv_folds={self.cv_folds})",
                self.cv_fold,
            )
        require(
            0.0 < self.cv_val_ratio < 1.0,
            "data.cv_val_ratio",
            "a number in (0, 1)",
            self.cv_val_ratio,
        )
        augment_parts(self.augment)  # raises naming data.augment and the valid names
        for key in ("omission_max", "omission_p"):
            v = getattr(self, key)
            require(0.0 <= v <= 1.0, f"data.{key}", "a number in [0, 1]", v)
        for key in ("mean", "std"):
            v = getattr(self, key)
            require(len(v) == 3, f"data.{key}", "3 numbers (R, G, B)", v)
        require(all(s > 0 for s in self.std), "data.std", "positive numbers", self.std)
        require(self.num_workers >= 0, "data.num_workers", "an integer >= 0", self.num_workers)
        for key in ("ignore_index", "colour_tolerance"):
            v = getattr(self, key)
            require(0 <= v <= 255, f"data.{key}", "an integer in 0..255", v)
        if self.name == "lesions":
            require(
                self.image_size >= 32,
                "data.image_size",
                "an integer >= 32 with data.name=lesions (the smallest finding is 0.04 x the side)",
                self.image_size,
            )
        self.check_groups()


__all__ = ["AUGMENT_PARTS", "AUGMENT_PRESETS", "DataConfig", "augment_parts"]
