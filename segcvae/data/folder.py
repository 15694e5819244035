"""Any folder pair of images and masks matched by file stem: how users bring their own data.

Layout under ``root`` (see datasets/folder/README.md)::

    images/<stem>.<jpg|png|...>
    masks/<stem>.png            class indices (single channel) or RGB colours (with a palette)
    splits/train.txt val.txt test.txt   optional: one stem per line

Without list files, the stems are split at random with a seed: ``test_ratio`` and ``val_ratio``
of them (at least one item each when the ratio is > 0) go to test and val, the rest to train.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segcvae.data.base import Sample, SegmentationDataset, check_same_size, drop_missing
from segcvae.data.files import DataError, colours_to_index, read_id_list, read_image, read_mask

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Black for class 0, then well-separated hues (golden-ratio steps) for visualisation."""
    colours = [(0, 0, 0)]
    for k in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _index_files(folder: Path, extensions: Sequence[str], what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f"{what} folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in found:
                raise DataError(
                    f"{what} folder {folder}: two files share the stem {path.stem!r} "
                    f"({found[path.stem].name}, {path.name}); expected one file per stem"
                )
            found[path.stem] = path
    if not found:
        raise DataError(f"{what} folder {folder} has no files with extensions {list(extensions)}")
    return found


class FolderDataset(SegmentationDataset):
    """Images and masks from two folders, matched by stem.

    Args:
        root: dataset folder.
        split: "train", "val" or "test".
        images: sub-folder of ``root`` with the images.
        masks: sub-folder of ``root`` with the masks.
        palette: one RGB colour per class for RGB masks; None = masks hold class indices.
        class_names: class names; None = ``class_0``, ``class_1``, ... (needs ``palette``).
        splits_dir: folder (relative to ``root`` or absolute) with ``train.txt`` / ``val.txt`` /
            ``test.txt`` listing stems; None or "" = a seeded random split.
        val_ratio: fraction of items for "val" in a random split.
        test_ratio: fraction of items for "test" in a random split.
        split_seed: seed of the random split.
        colour_tolerance: per-channel tolerance when mapping RGB masks to the palette.
        transform: albumentations transform applied to image and mask together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: index-mask value kept as "ignore" (excluded from losses and metrics).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        images: str = "images",
        masks: str = "masks",
        palette: Sequence[Sequence[int]] | None = None,
        class_names: Sequence[str] | None = None,
        splits_dir: str | Path | None = None,
        val_ratio: float = 0.1,
        test_ratio: float = 0.1,
        split_seed: int = 0,
        colour_tolerance: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        if palette is None and class_names is None:
            raise ValueError(
                "folder dataset: set data.folder_classes (index masks) or data.folder_palette "
                "(RGB masks) so the number of classes is known"
            )
        if palette is not None:
            bad = [c for c in palette if len(c) != 3 or not all(0 <= int(v) <= 255 for v in c)]
            if bad:
                raise ValueError(f"folder palette entries {bad}: expected [R, G, B] in 0..255")
            if class_names is not None and len(class_names) != len(palette):
                raise ValueError(
                    f"{len(class_names)} class names but {len(palette)} palette colours; "
                    "expected one colour per class"
                )
        num_classes = len(palette) if palette is not None else len(class_names or [])
        if not 1 <= num_classes <= 255:
            raise ValueError(f"{num_classes} classes; expected 1 to 255")
        self.class_names = (
            list(class_names) if class_names else [f"class_{k}" for k in range(num_classes)]
        )
        self.rgb_masks = palette is not None
        self.mask_colours = [tuple(int(v) for v in c) for c in palette] if palette else None
        self.palette = self.mask_colours or default_palette(num_classes)  # type: ignore[assignment]
        self.colour_tolerance = colour_tolerance
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        image_files = _index_files(self.root / images, IMAGE_EXTENSIONS, "image")
        mask_files = _index_files(self.root / masks, MASK_EXTENSIONS, "mask")
        orphans = sorted(set(mask_files) - set(image_files))
        if orphans:
            logger.warning(
                "%d masks in %s have no image and are unused (e.g. %s)",
                len(orphans),
                self.root / masks,
                mask_files[orphans[0]].name,
            )

        if splits_dir:
            split_file = self.root / splits_dir / f"{split}.txt"
            stems = [Path(s).stem if Path(s).suffix else s for s in read_id_list(split_file)]
            where = str(split_file)
            if not stems:
                raise DataError(f"split file {split_file} lists no items")
        else:
            stems = self._random_split(
                sorted(image_files), split, val_ratio, test_ratio, split_seed
            )
            where = f"the random {split} split of {self.root / images}"

        self.items: list[tuple[str, Path, Path]] = []
        missing = []
        for stem in stems:
            if stem not in image_files:
                missing.append(f"{self.root / images}/{stem}.* (image)")
            elif stem not in mask_files:
                missing.append(f"{self.root / masks}/{stem}.* (mask for {image_files[stem].name})")
            else:
                self.items.append((stem, image_files[stem], mask_files[stem]))
        self.items = drop_missing(self.items, missing, on_bad_sample, where)
        if not self.items:
            raise DataError(f"the {split} split ({where}) is empty")

    @staticmethod
    def _random_split(
        stems: list[str], split: str, val_ratio: float, test_ratio: float, seed: int
    ) -> list[str]:
        for name, ratio in (("val_ratio", val_ratio), ("test_ratio", test_ratio)):
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"folder {name}={ratio}; expected 0 <= ratio < 1")
        n = len(stems)
        n_test = max(1, round(test_ratio * n)) if test_ratio > 0 else 0
        n_val = max(1, round(val_ratio * n)) if val_ratio > 0 else 0
        if n_test + n_val >= n:
            raise DataError(
                f"{n} items cannot be split into val {n_val} + test {n_test} with a non-empty "
                "train split; add items, lower the ratios or give split list files"
            )
        order = np.random.default_rng(seed).permutation(n)
        bounds = {
            "test": (0, n_test),
            "val": (n_test, n_test + n_val),
            "train": (n_test + n_val, n),
        }
        lo, hi = bounds[split]
        return [stems[k] for k in sorted(order[lo:hi])]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        stem, image_path, mask_path = self.items[index]
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if self.rgb_masks:
            if raw.ndim != 3:
                raise DataError(
                    f"{mask_path}: single-channel mask; expected RGB colours of data.folder_palette"
                )
            mask = colours_to_index(
                raw, self.mask_colours, mask_path, self.class_names, self.colour_tolerance
            )
        else:
            if raw.ndim == 3:
                if not (
                    np.array_equal(raw[..., 0], raw[..., 1])
                    and np.array_equal(raw[..., 0], raw[..., 2])
                ):
                    raise DataError(
                        f"{mask_path}: colour mask; expected single-channel class indices "
                        "(or set data.folder_palette for RGB masks)"
                    )
                raw = raw[..., 0]
            bad = (raw >= self.num_classes) & (raw != self.ignore_index)
            if bad.any():
                values = np.unique(raw[bad])[:5].tolist()
                raise DataError(
                    f"{mask_path}: class values {values} out of range; expected 0..{self.num_classes - 1}"
                    f" or {self.ignore_index} (ignore)"
                )
            mask = raw.astype(np.uint8)
        sample = Sample(image=image, mask=mask, id=stem)
        check_same_size(sample, image_path, mask_path)
        return sample


__all__ = ["FolderDataset", "default_palette"]
