"""A procedural dataset whose masks are ambiguous given the image: amodal masks behind an occluder.

Each image shows one coloured bar (its colour gives its class) that runs into a grey, striped
occluder band crossing the whole image. The bar's hidden end lies somewhere under the band: its
hidden length is one of ``completions`` values (1/(M+1), 2/(M+1), ... of the band's width),
drawn uniformly and independently of everything visible. The *amodal* mask (the whole bar,
hidden part included) therefore has M equally likely answers for the very same pixels: a
deterministic network can only predict their average (the median length), while a conditional
generative model should sample all M. Every item carries all M masks (``"masks"``, shortest
completion first) so metrics such as GED can be computed exactly.

Generation is deterministic in ``(seed, split, index)``: every epoch and every DataLoader worker
sees the same image and the same chosen mask for an index. Drawing is numpy slicing, under
1 ms per 64x64 item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segcvae.config import ConfigError
from segcvae.data.base import Sample, SegmentationDataset

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


@dataclass
class ShapesItem:
    """Everything generated for one index.

    Attributes:
        image: (S, S, 3) uint8 RGB; independent of ``choice``.
        masks: (M, S, S) uint8, the M amodal completions, shortest first.
        occluder: (S, S) bool, where the occluder band is.
        choice: index of the completion used as "mask".
    """

    image: np.ndarray
    masks: np.ndarray
    occluder: np.ndarray
    choice: int


class ShapesDataset(SegmentationDataset):
    """Bars partly hidden by an occluder, with M plausible amodal masks each.

    Args:
        split: "train", "val" or "test" (each split is its own random stream).
        size: number of items in the split.
        image_size: side S of the square images.
        num_shapes: number of object classes (1-8); class 0 is background.
        completions: M, the number of plausible hidden lengths (>= 1; 1 = no ambiguity).
        difficulty: 0..1; the occluder band is 15% + 25% * difficulty of the image side wide,
            so a larger difficulty hides more of each bar and spreads the completions further.
        seed: seed of the whole dataset.
        transform: albumentations transform applied to image, mask and masks together.
        ignore_index: mask value excluded from losses (never used by this dataset).
    """

    masks_are_modes = True  # "masks" are all M plausible answers, not a sample of raters

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
    ) -> None:
        super().__init__(split, transform, "error", ignore_index)
        if size < 1:
            raise ConfigError(f"data.shapes_{split}_size: expected >= 1, got {size}")
        if not 1 <= num_shapes <= len(CLASS_COLOURS):
            raise ConfigError(
                f"data.shapes_classes: expected 1..{len(CLASS_COLOURS)}, got {num_shapes}"
            )
        if completions < 1:
            raise ConfigError(f"data.shapes_completions: expected >= 1, got {completions}")
        if not 0.0 <= difficulty <= 1.0:
            raise ConfigError(f"data.shapes_difficulty: expected 0..1, got {difficulty}")
        self.band = round(image_size * (0.15 + 0.25 * difficulty))
        if image_size < 16 or self.band < 2 * (completions + 1):
            raise ConfigError(
                f"data.image_size={image_size} is too small for data.shapes_completions="
                f"{completions} distinct completions (occluder band {self.band} px, expected >= "
                f"{2 * (completions + 1)} px): raise data.image_size or data.shapes_difficulty, or "
                "lower data.shapes_completions"
            )
        self.size = size
        self.image_size = image_size
        self.completions = completions
        self.difficulty = difficulty
        self.seed = seed
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
        # rendered items by index: an epoch after the first reads them instead of drawing them
        # again (the default job sees each training item 7 times; 2000 items of 64x64 take 56 MB)
        self._rendered: dict[int, ShapesItem] = {}

    def __len__(self) -> int:
        return self.size

    def render(self, index: int) -> ShapesItem:
        """Generate item ``index`` (deterministic in seed, split and index)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
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
            item = self._rendered[index] = self.render(index)
        return Sample(  # copies: transforms may write into their inputs
            image=item.image.copy(),
            mask=item.masks[item.choice].copy(),
            id=f"shapes-{self.split}-{index:06d}",
            masks=item.masks.copy(),
        )


__all__ = ["CLASS_COLOURS", "ShapesDataset", "ShapesItem"]
