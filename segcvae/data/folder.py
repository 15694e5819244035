"""Any folder of images and masks matched by name: how users bring their own data.

Three layouts under ``root`` (``data.folder_layout``; see datasets/folder/README.md)::

    pairs (default)   images/<stem>.<jpg|png|...>
                      masks/<stem>.png                one mask per image
    per_rater         images/<stem>.<jpg|png|...>
                      masks/<rater>/<stem>.png        one folder per rater; an image has as many
                                                      masks as rater folders hold its stem
    per_image         <item>/image.png                one folder per image holding the image and
                      <item>/*seg*.png                its rater masks (file-name globs configurable)
    splits/train.txt val.txt test.txt   optional: one stem (per_image: item folder name) per line

Masks hold class indices (single channel), RGB colours (with a palette), or, with
``binary_threshold``, any single-channel values thresholded into background / foreground (0/255
PNGs, JPEG masks). An item's rater masks are stacked in ``masks`` (R, H, W); ``mask`` is their
majority vote (ties go to the foreground, see :func:`segcvae.data.raters.majority_vote`).

Without list files, the stems are split at random with a seed: ``test_ratio`` and ``val_ratio``
of them (at least one item each when the ratio is > 0) go to test and val, the rest to train.
"""

from __future__ import annotations

import colorsys
import fnmatch
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segcvae.config import ConfigError
from segcvae.data.base import Sample, SegmentationDataset, check_same_size, drop_missing
from segcvae.data.files import DataError, colours_to_index, read_id_list, read_image, read_mask
from segcvae.data.raters import majority_vote_np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
JPEG_EXTENSIONS = (".jpg", ".jpeg")
LAYOUTS = ("pairs", "per_image", "per_rater")
JPEG_HINT = (
    "JPEG is lossy, so its labels are noisy; set data.binary_threshold=128 to read binary "
    "masks as foreground where value >= 128"
)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Black for class 0, then well-separated hues (golden-ratio steps) for visualisation."""
    colours = [(0, 0, 0)]
    for k in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def _index_files(
    folder: Path, extensions: Sequence[str], what: str, allow_empty: bool = False
) -> dict[str, Path]:
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
    if not found and not allow_empty:
        message = f"{what} folder {folder} has no files with extensions {list(extensions)}"
        jpegs = _jpegs(folder.iterdir()) if what.startswith("mask") else []
        if jpegs:
            message += f"; found {len(jpegs)} JPEG masks (e.g. {jpegs[0].name}): {JPEG_HINT}"
        elif what == "mask" and any(p.is_dir() for p in folder.iterdir()):
            message += (
                "; it holds sub-folders: for one mask folder per rater (masks/<rater>/<stem>.png) "
                "set data.folder_layout=per_rater"
            )
        raise DataError(message)
    return found


def _jpegs(paths: Any) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in JPEG_EXTENSIONS)


class FolderDataset(SegmentationDataset):
    """Images and their masks (one or several raters per image) from a folder.

    Args:
        root: dataset folder.
        split: "train", "val" or "test".
        images: sub-folder of ``root`` with the images (pairs, per_rater).
        masks: sub-folder of ``root`` with the masks (pairs) or the rater folders (per_rater).
        palette: one RGB colour per class for RGB masks; None = masks hold class indices.
        class_names: class names; None = ``class_0``, ``class_1``, ... (needs ``palette``, or
            ``binary_threshold``: then ``background``, ``foreground``).
        splits_dir: folder (relative to ``root`` or absolute) with ``train.txt`` / ``val.txt`` /
            ``test.txt`` listing stems; None or "" = a seeded random split.
        val_ratio: fraction of items for "val" in a random split.
        test_ratio: fraction of items for "test" in a random split.
        split_seed: seed of the random split.
        colour_tolerance: per-channel tolerance when mapping RGB masks to the palette.
        transform: albumentations transform applied to image and masks together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: index-mask value kept as "ignore" (excluded from losses and metrics).
        layout: "pairs", "per_image" or "per_rater" (see the module docstring).
        image_pattern: per_image: glob of the image file inside an item folder.
        mask_pattern: per_image: glob of the rater mask files inside an item folder.
        binary_threshold: None = index / colour masks; an int = two classes, a single-channel
            (or grey RGB) mask is foreground where its stored value >= the threshold. JPEG masks
            are read only with a threshold.
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
        layout: str = "pairs",
        image_pattern: str = "image.*",
        mask_pattern: str = "*seg*",
        binary_threshold: int | None = None,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        if layout not in LAYOUTS:
            raise ConfigError(
                f"data.folder_layout={layout!r}; expected one of {', '.join(LAYOUTS)}"
            )
        if binary_threshold is not None:
            if palette is not None:
                raise ConfigError(
                    "data.binary_threshold reads single-channel masks into two classes; it cannot "
                    "be combined with data.folder_palette (RGB label colours)"
                )
            if not 1 <= binary_threshold <= 65535:
                raise ConfigError(
                    f"data.binary_threshold={binary_threshold}; expected 1..255 (8-bit masks) "
                    "or up to 65535 (16-bit)"
                )
            if class_names is None:
                class_names = ["background", "foreground"]
            elif len(class_names) != 2:
                raise ConfigError(
                    f"data.binary_threshold gives two classes but data.folder_classes has "
                    f"{len(class_names)} ({list(class_names)}); expected [background, <object>]"
                )
        if palette is None and class_names is None:
            raise ValueError(
                "folder dataset: set data.folder_classes (index masks) or data.folder_palette "
                "(RGB masks) so the number of classes is known, or data.binary_threshold "
                "(binary masks such as 0/255)"
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
        self.binary_threshold = binary_threshold
        self.layout = layout
        self.mask_extensions = MASK_EXTENSIONS + (
            JPEG_EXTENSIONS if binary_threshold is not None else ()
        )
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        if layout == "per_image":
            image_files, mask_files = self._index_per_image(image_pattern, mask_pattern)
            image_where = f"the item folders of {self.root}"
        else:
            image_files = _index_files(self.root / images, IMAGE_EXTENSIONS, "image")
            if layout == "pairs":
                mask_files = {
                    s: [p]
                    for s, p in _index_files(
                        self.root / masks, self.mask_extensions, "mask"
                    ).items()
                }
            else:
                mask_files = self._index_per_rater(self.root / masks)
            image_where = str(self.root / images)
            orphans = sorted(set(mask_files) - set(image_files))
            if orphans:
                logger.warning(
                    "%d masks in %s have no image and are unused (e.g. %s)",
                    len(orphans),
                    self.root / masks,
                    mask_files[orphans[0]][0],
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
            where = f"the random {split} split of {image_where}"

        self.items: list[tuple[str, Path, list[Path]]] = []
        missing = []
        for stem in stems:
            if stem not in image_files:
                missing.append(
                    f"{self.root / stem}/{image_pattern} (image)"
                    if layout == "per_image"
                    else f"{self.root / images}/{stem}.* (image)"
                )
            elif not mask_files.get(stem):
                missing.append(self._describe_missing_mask(stem, image_files[stem], masks))
            else:
                self.items.append((stem, image_files[stem], mask_files[stem]))
        hint = ""
        if missing and self.binary_threshold is None:
            jpeg_home = self.root / masks if layout == "pairs" else None
            if jpeg_home is not None and jpeg_home.is_dir() and _jpegs(jpeg_home.iterdir()):
                hint = f"the mask folder holds JPEG masks: {JPEG_HINT}"
        self.items = drop_missing(self.items, missing, on_bad_sample, where, hint)
        if not self.items:
            raise DataError(f"the {split} split ({where}) is empty")

    # ------------------------------------------------------------------ indexing the layouts
    def _index_per_rater(self, folder: Path) -> dict[str, list[Path]]:
        if not folder.is_dir():
            raise DataError(f"mask folder not found: {folder}")
        raters = sorted(p for p in folder.iterdir() if p.is_dir())
        if not raters:
            raise DataError(
                f"mask folder {folder} has no rater sub-folders; data.folder_layout=per_rater "
                "expects masks/<rater>/<stem>.png (for masks/<stem>.png use folder_layout=pairs)"
            )
        found: dict[str, list[Path]] = {}
        for rater in raters:
            for stem, path in _index_files(
                rater, self.mask_extensions, f"mask (rater {rater.name})", allow_empty=True
            ).items():
                found.setdefault(stem, []).append(path)
        if not found:
            jpegs = [j for r in raters for j in _jpegs(r.iterdir())]
            message = (
                f"the rater folders {[r.name for r in raters][:5]} of {folder} hold no mask files "
                f"with extensions {list(self.mask_extensions)}"
            )
            if jpegs:
                message += f"; found {len(jpegs)} JPEG masks (e.g. {jpegs[0]}): {JPEG_HINT}"
            raise DataError(message)
        return found

    def _index_per_image(
        self, image_pattern: str, mask_pattern: str
    ) -> tuple[dict[str, Path], dict[str, list[Path]]]:
        images: dict[str, Path] = {}
        masks: dict[str, list[Path]] = {}
        jpeg_masks: list[Path] = []
        for item in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(p for p in item.iterdir() if p.is_file())
            found = [
                p
                for p in files
                if fnmatch.fnmatch(p.name, image_pattern) and p.suffix.lower() in IMAGE_EXTENSIONS
            ]
            if not found:
                continue  # e.g. splits/: not an item folder
            if len(found) > 1:
                raise DataError(
                    f"{item}: {len(found)} files match data.folder_image_pattern={image_pattern!r} "
                    f"({', '.join(p.name for p in found[:3])}); expected one image per item folder"
                )
            images[item.name] = found[0]
            candidates = [
                p for p in files if p != found[0] and fnmatch.fnmatch(p.name, mask_pattern)
            ]
            masks[item.name] = [p for p in candidates if p.suffix.lower() in self.mask_extensions]
            jpeg_masks += [p for p in candidates if p.suffix.lower() in JPEG_EXTENSIONS]
        if not images:
            raise DataError(
                f"{self.root} has no item folders with an image matching "
                f"data.folder_image_pattern={image_pattern!r}; data.folder_layout=per_image "
                "expects <root>/<item>/<image> beside the item's rater masks"
            )
        if not any(masks.values()):
            message = (
                f"the item folders of {self.root} hold no mask files matching "
                f"data.folder_mask_pattern={mask_pattern!r} with extensions "
                f"{list(self.mask_extensions)}"
            )
            if jpeg_masks:
                message += (
                    f"; found {len(jpeg_masks)} JPEG masks (e.g. {jpeg_masks[0]}): {JPEG_HINT}"
                )
            raise DataError(message)
        self._mask_pattern = mask_pattern
        return images, masks

    def _describe_missing_mask(self, stem: str, image: Path, masks: str) -> str:
        if self.layout == "per_image":
            return f"{image.parent}/{self._mask_pattern} (no rater mask for {image.name})"
        if self.layout == "per_rater":
            return f"{self.root / masks}/<rater>/{stem}.* (no rater mask for {image.name})"
        return f"{self.root / masks}/{stem}.* (mask for {image.name})"

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

    # ------------------------------------------------------------------ reading an item
    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        stem, image_path, mask_paths = self.items[index]
        image = read_image(image_path)
        masks = []
        for mask_path in mask_paths:
            mask = self.read_label(mask_path)
            check_same_size(Sample(image=image, mask=mask, id=stem), image_path, mask_path)
            masks.append(mask)
        stacked = np.stack(masks)  # (R, H, W)
        reference = (
            stacked[0]
            if len(masks) == 1
            else majority_vote_np(stacked, self.num_classes, self.ignore_index)
        )
        return Sample(image=image, mask=reference, id=stem, masks=stacked)

    def read_label(self, mask_path: Path) -> np.ndarray:
        """One mask file as (H, W) uint8 class indices; DataError naming the file otherwise."""
        raw = read_mask(mask_path)
        if self.binary_threshold is not None:
            if raw.ndim == 3:
                if int(np.ptp(raw.astype(np.int16), axis=-1).max()) > 64:
                    raise DataError(
                        f"{mask_path}: colour mask; data.binary_threshold expects grey masks "
                        "(set data.folder_palette for RGB label colours instead)"
                    )
                raw = cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
            return (raw >= self.binary_threshold).astype(np.uint8)
        if self.rgb_masks:
            if raw.ndim != 3:
                raise DataError(
                    f"{mask_path}: single-channel mask; expected RGB colours of data.folder_palette"
                )
            return colours_to_index(
                raw, self.mask_colours, mask_path, self.class_names, self.colour_tolerance
            )
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
        k = self.num_classes
        bad = (raw >= k) & (raw != self.ignore_index)
        if bad.any():
            values = np.unique(raw[bad])[:5].tolist()
            message = (
                f"{mask_path}: class values {values} out of range; expected 0..{k - 1} "
                f"or {self.ignore_index} (ignore)"
            )
            if k == 2:
                message += (
                    "; for binary masks stored with other values (e.g. 0/255, or JPEG noise) "
                    "set data.binary_threshold=128"
                )
            raise DataError(message)
        if k == 2 and self.ignore_index == 255:
            # A 0/255 mask passes the range check (255 = ignore) and would train on nothing.
            values = np.unique(raw)
            if 255 in values and 1 not in values:
                raise DataError(
                    f"{mask_path}: values {values.tolist()[:5]} found, with 2 classes; this looks "
                    "like a 0/255 binary mask, but 255 is data.ignore_index (excluded from the "
                    "loss): set data.binary_threshold=128 to read 255 as the foreground"
                )
        return raw.astype(np.uint8)


__all__ = ["FolderDataset", "default_palette"]
