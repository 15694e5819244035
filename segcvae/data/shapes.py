"""A procedural dataset whose masks are ambiguous given the image, in five kinds of ambiguity.

``nested`` (the default): each image shows one coloured bar (its colour gives its class) that runs
into a grey, striped occluder band crossing the whole image. The bar's hidden end lies somewhere
under the band: its hidden length is one of ``completions`` values (1/(M+1), 2/(M+1), ... of the
band's width), drawn uniformly and independently of everything visible. The *amodal* mask (the
whole bar, hidden part included) therefore has M equally likely answers for the very same pixels:
a deterministic network can only predict their average (the median length), while a conditional
generative model should sample all M.

The other kinds (segcvae/data/shapes_kinds.py) are not nested: ``exclusive`` (an arm under exactly
one of 2-3 patches), ``independent`` (2-3 bars, each with its own hidden length: the masks are the
product of the parts' choices), ``flip`` (2-3 objects whose class is one of two, independently);
``mixed`` draws each item's kind. Their masks have known, unequal probabilities (``mask_probs``).
Every item carries all its plausible masks (``"masks"``) so metrics such as GED can be computed
exactly; datasets/shapes/README.md describes each kind.

Generation is deterministic in ``(seed, split, index)``: every epoch and every DataLoader worker
sees the same image and the same chosen mask for an index. Drawing is numpy slicing, under
1 ms per 64x64 item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import Sample, SegmentationDataset
from segcvae.data.shapes_kinds import KIND_MODES, RENDERERS, ShapesItem
from segcvae.settings import setting

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
CLASS_COLOURS = [
    ("red", (220, 50, 50)),
    ("green", (50, 190, 70)),
    ("blue", (60, 100, 235)),
    ("yellow", (235, 205, 40)),
    ("magenta", (210, 60, 210)),
    ("cyan", (50, 200, 210)),
    ("orange", (245, 140, 30)),
    ("purple", (130, 70, 200)),
]
ShapesAmbiguity = Literal["nested", "exclusive", "independent", "flip", "mixed"]
AMBIGUITIES: tuple[str, ...] = get_args(ShapesAmbiguity)
MIXED_KINDS = ("nested", "exclusive", "independent", "flip")  # what a mixed item may be
MIXED_STREAM = 1  # seeds a mixed item's kind apart from the item's own draws


@dataclass
class ShapesSettings:
    """The shapes dataset's own settings (``data.shapes.<key>``; datasets/shapes/README.md)."""

    train_size: int = setting(2000, ge=1, help="images in train (rendered from the seed and index)")
    val_size: int = setting(200, ge=1, help="images in val")
    test_size: int = setting(200, ge=1, help="images in test")
    classes: int = setting(3, ge=1, le=len(CLASS_COLOURS), help="object classes, plus background")
    completions: int = setting(3, ge=1, help="nested: M plausible amodal masks per image")
    difficulty: float = setting(
        0.5, ge=0, le=1, help="how much of each object the occluder may hide"
    )
    seed: int = setting(0, help="seed of the rendering: the same seed gives the same images")
    # the kind of ambiguity (datasets/shapes/README.md): nested = one bar under a band, M equally
    # likely hidden lengths (completions, difficulty); exclusive = an arm under exactly one of 2-3
    # patches; independent = 2-3 bars each under its own patch, lengths chosen independently (up
    # to 27 joint masks); flip = 2-3 objects whose class is one of two, independently; mixed =
    # each item one of these. All but nested carry mask_probs.
    ambiguity: ShapesAmbiguity = "nested"

    def validate(self, prefix: str) -> None:
        """The kinds with two classes of objects need two classes."""
        if self.ambiguity in ("independent", "flip", "mixed") and self.classes < 2:
            raise ConfigError(
                f"{prefix}.classes: expected >= 2 with {prefix}.ambiguity={self.ambiguity}, got "
                f"{self.classes}"
            )


class ShapesDataset(SegmentationDataset):
    """Shapes partly hidden by occluders or of uncertain class, with all their plausible masks.

    Args:
        split: "train", "val" or "test" (each split is its own random stream).
        size: number of items in the split.
        image_size: side S of the square images (>= 32 for the kinds other than nested).
        num_shapes: number of object classes (1-8; >= 2 for independent, flip and mixed); class 0
            is background.
        completions: nested: M, the number of plausible hidden lengths (>= 1; 1 = no ambiguity).
        difficulty: nested: 0..1; the occluder band is 15% + 25% * difficulty of the image side
            wide, so a larger difficulty hides more of each bar and spreads the completions further.
        seed: seed of the whole dataset.
        transform: albumentations transform applied to image, mask and masks together.
        ignore_index: mask value excluded from losses (never used by this dataset).
        ambiguity: the kind of ambiguity: nested (bars under a band, M equally likely lengths;
            items without ``mask_probs``), exclusive, independent, flip, or mixed (each item's
            kind drawn per index); see datasets/shapes/README.md.
    """

    masks_are_modes = True  # "masks" are all M plausible answers, not a sample of raters
    settings = ShapesSettings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> ShapesDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        s = cfg.settings("shapes")
        sizes = {"train": s.train_size, "val": s.val_size, "test": s.test_size}
        return cls(
            split=split,
            size=sizes.get(split, 0),
            image_size=cfg.image_size,
            num_shapes=s.classes,
            completions=s.completions,
            difficulty=s.difficulty,
            seed=s.seed,
            transform=transform,
            ignore_index=cfg.ignore_index,
            ambiguity=s.ambiguity,
        )

    def __init__(
        self,
        split: str,
        size: int,
        image_size: int = 64,
        num_shapes: int = 3,
        completions: int = 3,
        difficulty: float = 0.5,
        seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        ignore_index: int = 255,
        ambiguity: ShapesAmbiguity = "nested",
    ) -> None:
        super().__init__(split, transform, "error", ignore_index)
        if ambiguity not in AMBIGUITIES:
            raise ConfigError(
                f"data.shapes.ambiguity: expected one of {', '.join(AMBIGUITIES)}, got {ambiguity!r}"
            )
        if size < 1:
            raise ConfigError(f"data.shapes.{split}_size: expected >= 1, got {size}")
        if not 1 <= num_shapes <= len(CLASS_COLOURS):
            raise ConfigError(
                f"data.shapes.classes: expected 1..{len(CLASS_COLOURS)}, got {num_shapes}"
            )
        if ambiguity in ("independent", "flip", "mixed") and num_shapes < 2:
            raise ConfigError(
                f"data.shapes.classes: expected >= 2 with data.shapes.ambiguity={ambiguity} (its "
                f"objects need two classes), got {num_shapes}"
            )
        if ambiguity != "nested" and image_size < 32:
            raise ConfigError(
                f"data.image_size: expected >= 32 with data.shapes.ambiguity={ambiguity}, got "
                f"{image_size}"
            )
        if completions < 1:
            raise ConfigError(f"data.shapes.completions: expected >= 1, got {completions}")
        if not 0.0 <= difficulty <= 1.0:
            raise ConfigError(f"data.shapes.difficulty: expected 0..1, got {difficulty}")
        self.band = round(image_size * (0.15 + 0.25 * difficulty))
        if ambiguity in ("nested", "mixed") and (
            image_size < 16 or self.band < 2 * (completions + 1)
        ):
            raise ConfigError(
                f"data.image_size={image_size} is too small for data.shapes.completions="
                f"{completions} distinct completions (occluder band {self.band} px, expected >= "
                f"{2 * (completions + 1)} px): raise data.image_size or data.shapes.difficulty, or "
                "lower data.shapes.completions"
            )
        self.size = size
        self.image_size = image_size
        self.completions = completions
        self.difficulty = difficulty
        self.seed = seed
        self.ambiguity = ambiguity
        # M, the same for every item: an item with fewer plausible masks is padded with copies of
        # its first mask of probability 0
        self.num_modes = {
            "nested": completions,
            "mixed": max(completions, *KIND_MODES.values()),
            **KIND_MODES,
        }[ambiguity]
        self.class_names = ["background"] + [name for name, _ in CLASS_COLOURS[:num_shapes]]
        self.palette = [(0, 0, 0)] + [colour for _, colour in CLASS_COLOURS[:num_shapes]]
        s = image_size
        yy, xx = np.mgrid[:s, :s]
        self._stripes = np.where((xx + yy) // 3 % 2 == 0, 150, 190).astype(np.int16)  # (S, S)
        # Hidden lengths, as fractions of the band: 1/(M+1), ..., M/(M+1); the bar never shows
        # on the far side of the band, so all M completions fit the same image.
        self.hidden_lengths = [
            round(self.band * (k + 1) / (completions + 1)) for k in range(completions)
        ]
        # rendered nested items by index: an epoch after the first reads them instead of drawing
        # them again (the default job sees each training item 7 times; 2000 items of 64x64 take
        # 56 MB). The other kinds keep up to 27 masks an item and are drawn again instead.
        self._rendered: dict[int, ShapesItem] = {}

    def __len__(self) -> int:
        return self.size

    def kind(self, index: int) -> str:
        """The kind of ambiguity of item ``index``: the dataset's, or for mixed a seeded draw."""
        if self.ambiguity != "mixed":
            return self.ambiguity
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index, MIXED_STREAM])
        return MIXED_KINDS[int(rng.integers(len(MIXED_KINDS)))]

    def render(self, index: int) -> ShapesItem:
        """Generate item ``index`` (deterministic in seed, split and index).

        Item ``index`` of a mixed dataset is item ``index`` of the dataset of its kind.
        """
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        kind = self.kind(index)
        if kind == "nested":
            return self._render_nested(rng)
        return RENDERERS[kind](rng, self.image_size, self.palette)

    def _render_nested(self, rng: np.random.Generator) -> ShapesItem:
        """A bar running into the band, its M equally likely completions (shortest first)."""
        s, band = self.image_size, self.band
        # Canonical layout: the bar enters the band from the left; a random quarter turn follows.
        thickness = int(rng.integers(round(0.18 * s), round(0.32 * s) + 1))
        band_x = int(rng.integers(round(0.45 * s), s - band))
        visible = int(rng.integers(round(0.2 * s), round(0.35 * s) + 1))
        bar_x = max(1, band_x - visible)
        bar_y = int(rng.integers(1, s - thickness))
        cls = int(rng.integers(1, self.num_classes))
        colour = np.asarray(self.palette[cls], np.int16) + rng.integers(-15, 16, 3)
        background = int(rng.integers(20, 80))
        noise = rng.normal(0.0, 6.0, (s, s, 3))
        turns = int(rng.integers(4))

        image = np.empty((s, s, 3), np.float64)
        image[:] = background
        image[bar_y : bar_y + thickness, bar_x:band_x] = colour
        image[:, band_x : band_x + band] = self._stripes[:, band_x : band_x + band, None]
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        occluder = np.zeros((s, s), bool)
        occluder[:, band_x : band_x + band] = True
        masks = np.zeros((self.completions, s, s), np.uint8)
        for k, hidden in enumerate(self.hidden_lengths):
            masks[k, bar_y : bar_y + thickness, bar_x : band_x + hidden] = cls
        choice = int(rng.integers(self.completions))  # drawn after the image: independent of it

        image = np.ascontiguousarray(np.rot90(image, turns))
        masks = np.ascontiguousarray(np.rot90(masks, turns, axes=(1, 2)))
        occluder = np.ascontiguousarray(np.rot90(occluder, turns))
        return ShapesItem(image=image, masks=masks, occluder=occluder, choice=choice)

    def load(self, index: int) -> Sample:
        item = self._rendered.get(index)
        if item is None:
            item = self.render(index)
            if self.ambiguity == "nested":
                self._rendered[index] = item
        masks, probs = item.masks, item.probs
        if self.ambiguity != "nested":  # probabilities for every item, M fixed by padding
            m = len(masks)
            if probs is None:
                probs = np.full(m, 1.0 / m)
            pad = self.num_modes - m
            masks = np.concatenate([masks, np.repeat(masks[:1], pad, axis=0)])
            probs = np.concatenate([probs, np.zeros(pad)])
        return Sample(  # copies: transforms may write into their inputs
            image=item.image.copy(),
            mask=item.masks[item.choice].copy(),
            id=f"shapes-{self.split}-{index:06d}",
            masks=masks.copy(),
            mask_probs=probs,
        )


__all__ = ["CLASS_COLOURS", "ShapesDataset", "ShapesItem"]
