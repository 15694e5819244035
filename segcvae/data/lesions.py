"""A procedural multi-rater dataset where raters disagree about whether anything is there.

LIDC-style lesion data: small, faint findings that some raters mark and others leave empty. GED
puts a non-empty hypothesis at distance 1 from an empty rater, so a model has to draw empty masks
about as often as the raters leave the image empty; ``empty_share_error`` measures that.

Generative process of one item (deterministic in ``(seed, split, index)``), at side S and R raters:

1. **Background**: a grey level drawn from U(70, 110), a smooth texture (white noise blurred with
   sigma S/6, scaled to standard deviation 5) and pixel noise of standard deviation
   ``NOISE`` = 10 (0-255 scale).
2. **How many raters mark the finding**, k in 0..R: k = 0 with probability 1/4 (**nothing is
   drawn**: the image has no finding and every rater's mask is empty), k = R with probability 1/4
   (an obvious finding that every rater marks), and each k in 1..R-1 with probability 1/(2 (R-1))
   (all of R's probability when R = 1).
3. **The finding** (k >= 1): an ellipse with mean semi-axis r ~ U(0.04 S, 0.10 S), aspect ratio
   U(0.7, 1), any orientation, entirely inside the image, brighter than the background by a
   contrast C with a soft edge (a linear ramp 1.5 px wide). Its **conspicuity**, contrast times
   size, sets k: ``C r / (NOISE r_ref) = 0.6 + 2.4 k / R`` (r_ref = S/16), so a small finding
   needs more contrast than a large one to be marked by as many raters. The image alone thus
   determines the raters' distribution: the share of raters who leave it empty is (R - k) / R,
   readable from the finding's contrast and size (nearby levels overlap somewhat through the
   texture, as they would in a scan).
4. **The raters**: k of the R raters, chosen at random, mark the finding; each of them draws its
   own boundary, the ellipse grown or shrunk by one pixel or left as it is (uniformly). The other
   R - k masks are empty.

Every item carries all R masks (``"masks"``, in rater order); ``"mask"`` is their majority vote
(ties go to the foreground: with 4 raters a finding 2 of them mark is in it). One class besides
the background: ``lesion``. Drawing an item takes about a millisecond at 64x64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import Sample, SegmentationDataset
from segcvae.data.raters import majority_vote_np
from segcvae.settings import setting

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
NOISE = 10.0  # pixel noise standard deviation, grey levels
TEXTURE = 5.0  # standard deviation of the smooth background texture, grey levels
EDGE = 1.5  # width of the finding's soft edge, pixels
P_NOTHING = 0.25  # probability that an image has no finding (every rater empty)
P_OBVIOUS = 0.25  # probability of a finding every rater marks


def conspicuity(marked: int, raters: int) -> float:
    """Contrast times size, ``C r / (NOISE r_ref)``, of a finding that ``marked`` of ``raters`` mark.

    Args:
        marked: k in 1..R.
        raters: R.

    Returns:
        0.6 + 2.4 k / R: from 1.2 (k = 1 of 4) to 3.0 (all raters).
    """
    return 0.6 + 2.4 * marked / raters


@dataclass
class LesionsItem:
    """Everything generated for one index.

    Attributes:
        image: (S, S, 3) uint8, a grey image (three equal channels).
        masks: (R, S, S) uint8 rater masks, 0 or 1.
        marked: k, how many raters mark the finding (0: there is none).
        finding: (S, S) bool, the finding's own ellipse (before the raters' boundary changes);
            all False when k = 0.
        contrast: C, grey levels above the background at the finding's centre (0 when k = 0).
        radius: r, the finding's mean semi-axis in pixels (0 when k = 0).
    """

    image: np.ndarray
    masks: np.ndarray
    marked: int
    finding: np.ndarray
    contrast: float
    radius: float


@dataclass
class LesionsSettings:
    """The lesions dataset's own settings (``data.lesions.<key>``; datasets/lesions/README.md)."""

    train_size: int = setting(2000, ge=1, help="images in train")
    val_size: int = setting(200, ge=1, help="images in val")
    test_size: int = setting(200, ge=1, help="images in test")
    raters: int = setting(4, ge=1, help="R rater masks per image (empty raters move by 1/R)")
    seed: int = setting(0, help="seed of the rendering")


class LesionsDataset(SegmentationDataset):
    """Faint small findings some raters mark, with per-rater boundaries (see the module docstring).

    Args:
        split: "train", "val" or "test" (each split is its own random stream).
        size: number of items in the split.
        image_size: side S of the square images (>= 32).
        raters: R, rater masks per image (>= 1; the share of empty raters moves in steps of 1/R).
        seed: seed of the whole dataset.
        transform: albumentations transform applied to image, mask and masks together.
        ignore_index: mask value excluded from losses (never used by this dataset).
    """

    class_names = ["background", "lesion"]
    palette = [(0, 0, 0), (255, 70, 70)]
    settings = LesionsSettings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> LesionsDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        s = cfg.settings("lesions")
        sizes = {"train": s.train_size, "val": s.val_size, "test": s.test_size}
        return cls(
            split=split,
            size=sizes.get(split, 0),
            image_size=cfg.image_size,
            raters=s.raters,
            seed=s.seed,
            transform=transform,
            ignore_index=cfg.ignore_index,
        )

    def __init__(
        self,
        split: str,
        size: int,
        image_size: int = 64,
        raters: int = 4,
        seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(split, transform, "error", ignore_index)
        if size < 1:
            raise ConfigError(f"data.lesions.{split}_size: expected >= 1, got {size}")
        if raters < 1:
            raise ConfigError(f"data.lesions.raters: expected >= 1, got {raters}")
        if image_size < 32:
            raise ConfigError(
                f"data.image_size: expected >= 32 for data.name=lesions (the smallest finding is "
                f"0.04 x the side), got {image_size}"
            )
        self.size = size
        self.image_size = image_size
        self.raters = raters
        self.seed = seed
        s = image_size
        self._yy, self._xx = np.mgrid[:s, :s].astype(np.float64)

    def __len__(self) -> int:
        return self.size

    def _marked(self, rng: np.random.Generator) -> int:
        """k, the number of raters who mark the finding (step 2 of the module docstring)."""
        u = rng.random()
        if u < P_NOTHING:
            return 0
        if u < P_NOTHING + P_OBVIOUS or self.raters == 1:
            return self.raters
        return int(rng.integers(1, self.raters))

    def _frame(self, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates in the finding's frame: along its first axis and across it, (S, S) each."""
        dy, dx = self._yy - cy, self._xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        return u, v

    def render(self, index: int) -> LesionsItem:
        """Generate item ``index`` (deterministic in seed, split and index)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        s, r_count = self.image_size, self.raters
        texture = gaussian_filter(rng.standard_normal((s, s)), s / 6, mode="reflect")
        texture *= TEXTURE / max(float(texture.std()), 1e-12)
        image = rng.uniform(70, 110) + texture + rng.normal(0.0, NOISE, (s, s))
        masks = np.zeros((r_count, s, s), np.uint8)
        finding = np.zeros((s, s), bool)
        marked = self._marked(rng)
        contrast = radius = 0.0
        if marked > 0:
            radius = float(rng.uniform(0.04 * s, 0.10 * s))
            aspect = float(rng.uniform(0.7, 1.0))
            a, b = radius / np.sqrt(aspect), radius * np.sqrt(aspect)  # mean sqrt(a b) = radius
            angle = float(rng.uniform(0.0, np.pi))
            margin = a + 3
            cy, cx = rng.uniform(margin, s - margin, 2)
            contrast = NOISE * conspicuity(marked, r_count) * (s / 16) / radius
            u, v = self._frame(cy, cx, angle)

            def inside(grow: float) -> np.ndarray:
                # semi-axes never below 1 px: the pixel nearest the centre is always inside
                ga, gb = max(a + grow, 1.0), max(b + grow, 1.0)
                return (u / ga) ** 2 + (v / gb) ** 2 <= 1.0

            # depth below the edge, approximately in pixels (negative outside): a linear ramp
            depth = (1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * radius
            image += contrast * np.clip(depth / EDGE + 0.5, 0.0, 1.0)
            finding = inside(0.0)
            who = rng.choice(r_count, size=marked, replace=False)
            grow = rng.integers(-1, 2, size=marked)  # each marking rater's boundary: -1, 0, +1 px
            for rater, g in zip(who, grow, strict=True):
                masks[rater] = inside(float(g))
        grey = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return LesionsItem(
            image=np.repeat(grey[..., None], 3, axis=2),
            masks=masks,
            marked=marked,
            finding=finding,
            contrast=contrast,
            radius=radius,
        )

    def load(self, index: int) -> Sample:
        item = self.render(index)
        return Sample(
            image=item.image,
            mask=majority_vote_np(item.masks, self.num_classes, self.ignore_index),
            id=f"lesions-{self.split}-{index:06d}",
            masks=item.masks,
        )


__all__ = ["LesionsDataset", "LesionsItem", "conspicuity"]
