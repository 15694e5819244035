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

With ``split_dirs`` (``data.folder_split_dirs``, e.g. ``{train: training, test: testing}``) each
named split is a sub-folder of ``root`` in the chosen layout; a split it does not name (val, test)
is carved from the train folder's items by the seeded ratios.

Images and masks may be NIfTI files (``.nii``, ``.nii.gz``; see :mod:`segcvae.data.nifti`): a 2D
image is one item, a 3D volume one item per slice along ``nifti_axis`` (ids ``<stem>:z012``),
optionally only the slices where some rater marked foreground. Splits (list files, folders, the
random split) hold whole images or volumes, never single slices.

Masks hold class indices (single channel), RGB colours (with a palette), or, with
``binary_threshold``, any single-channel values thresholded into background / foreground (0/255
PNGs, JPEG masks). An item's rater masks are stacked in ``masks`` (R, H, W); ``mask`` is their
majority vote (ties go to the foreground, see :func:`segcvae.data.raters.majority_vote`).

Without list files or split folders, the stems are split at random with a seed: ``test_ratio``
and ``val_ratio`` of them (at least one item each when the ratio is > 0) go to test and val, the
rest to train.
"""

from __future__ import annotations

import colorsys
import fnmatch
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import SPLITS, Sample, SegmentationDataset, drop_missing
from segcvae.data.files import (
    NIFTI_EXTENSIONS,
    DataError,
    colours_to_index,
    file_extension,
    file_stem,
    read_id_list,
    read_image,
    read_mask,
)
from segcvae.data.nifti import (
    SLICE_SELECTIONS,
    NiftiImage,
    check_axis,
    check_same_grid,
    integer_labels,
    intensity_range,
    is_nifti,
    slice_name,
    to_uint8,
)
from segcvae.data.raters import majority_vote_np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".webp",
) + NIFTI_EXTENSIONS
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm") + NIFTI_EXTENSIONS
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
        if path.is_file() and file_extension(path) in extensions:
            stem = file_stem(path)
            if stem in found:
                raise DataError(
                    f"{what} folder {folder}: two files share the stem {stem!r} "
                    f"({found[stem].name}, {path.name}); expected one file per stem"
                )
            found[stem] = path
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


def _picture_size(path: Path, axis: int) -> tuple[int, int] | None:
    """(H, W) of a 2D image or mask file from its header, without decoding; None if unknown."""
    try:
        if is_nifti(path):
            return NiftiImage(path).slice_size(axis)
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (DataError, OSError, ValueError):
        return None


def _holds(folder: Path) -> str:
    """``name/ holds a.png, b/ and 3 more``: what a folder holds, for messages."""
    entries = sorted(folder.iterdir())
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:4]]
    more = f" and {len(entries) - 4} more" if len(entries) > 4 else ""
    return (
        f"{folder.name}/ holds {', '.join(names)}{more}" if entries else f"{folder.name}/ is empty"
    )


def _is_split_folder(folder: Path, root: Path, splits_dir: str | Path | None) -> bool:
    if splits_dir:
        return folder.resolve() == (root / splits_dir).resolve()
    return folder.name == "splits"


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
        split_dirs: split name -> sub-folder of ``root`` holding that split's items (in
            ``layout``); must name "train"; a split it does not name is carved from the train
            folder with ``val_ratio`` / ``test_ratio``. None = one folder for all splits.
        mask_resize: resize a mask whose size differs from its image's to the image's
            (nearest neighbour) instead of raising DataError. Not for NIfTI pairs, which must
            share the image's voxel grid.
        nifti_axis: the axis (0, 1, 2 = x, y, z) along which 3D NIfTI volumes are sliced.
        nifti_slices: "all" slices of a volume, or only those where some rater marked a
            foreground class ("foreground").
        nifti_intensity: how NIfTI intensities become 8-bit images ("percentile", "minmax",
            "none"; see :mod:`segcvae.data.nifti`).
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
        split_dirs: Mapping[str, str] | None = None,
        mask_resize: bool = False,
        nifti_axis: int = 2,
        nifti_slices: str = "all",
        nifti_intensity: str = "percentile",
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
        if nifti_slices not in SLICE_SELECTIONS:
            raise ValueError(
                f"data.nifti_slices={nifti_slices!r}; expected one of {', '.join(SLICE_SELECTIONS)}"
            )
        intensity_range(np.zeros(1), nifti_intensity, "")  # ValueError naming an unknown rule
        self.class_names = (
            list(class_names) if class_names else [f"class_{k}" for k in range(num_classes)]
        )
        self.rgb_masks = palette is not None
        self.mask_colours = [tuple(int(v) for v in c) for c in palette] if palette else None
        self.palette = self.mask_colours or default_palette(num_classes)  # type: ignore[assignment]
        self.colour_tolerance = colour_tolerance
        self.binary_threshold = binary_threshold
        self.layout = layout
        self.mask_resize = mask_resize
        self.nifti_axis = check_axis(nifti_axis)
        self.nifti_slices = nifti_slices
        self.nifti_intensity = nifti_intensity
        self.mask_extensions = MASK_EXTENSIONS + (
            JPEG_EXTENSIONS if binary_threshold is not None else ()
        )
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"dataset folder not found: {self.root}")
        self.base, own_folder = self._split_folder(split, split_dirs, splits_dir)
        self._index_note = ""  # per_image: what the item folders held, for the split errors
        base = self.base
        if layout == "per_image":
            image_files, mask_files = self._index_per_image(image_pattern, mask_pattern, splits_dir)
            image_where = f"the item folders of {base}"
        else:
            image_files = _index_files(base / images, IMAGE_EXTENSIONS, "image")
            if layout == "pairs":
                mask_files = {
                    s: [p]
                    for s, p in _index_files(base / masks, self.mask_extensions, "mask").items()
                }
            else:
                mask_files = self._index_per_rater(base / masks)
            image_where = str(base / images)
            orphans = sorted(set(mask_files) - set(image_files))
            if orphans:
                logger.warning(
                    "%d masks in %s have no image and are unused (e.g. %s)",
                    len(orphans),
                    base / masks,
                    mask_files[orphans[0]][0],
                )

        if splits_dir:
            split_file = self.root / splits_dir / f"{split}.txt"
            stems = [file_stem(s) if file_extension(s) else s for s in read_id_list(split_file)]
            where = str(split_file)
            if not stems:
                raise DataError(f"split file {split_file} lists no items")
        elif own_folder:
            stems = sorted(image_files)
            where = f"the {split} split folder {image_where}"
        else:
            carve = split_dirs or {}
            try:
                stems = self._random_split(
                    sorted(image_files),
                    split,
                    0.0 if "val" in carve else val_ratio,
                    0.0 if "test" in carve else test_ratio,
                    split_seed,
                )
            except DataError as e:
                raise DataError(f"{e}{self._index_note}") from None
            where = f"the random {split} split of {image_where}"

        items: list[tuple[str, Path, list[Path]]] = []
        missing = []
        for stem in stems:
            if stem not in image_files:
                missing.append(
                    f"{base / stem}/{image_pattern} (image)"
                    if layout == "per_image"
                    else f"{base / images}/{stem}.* (image)"
                )
            elif not mask_files.get(stem):
                missing.append(self._describe_missing_mask(stem, image_files[stem], masks))
            else:
                items.append((stem, image_files[stem], mask_files[stem]))
        hint = ""
        if missing and self.binary_threshold is None:
            jpeg_home = base / masks if layout == "pairs" else None
            if jpeg_home is not None and jpeg_home.is_dir() and _jpegs(jpeg_home.iterdir()):
                hint = f"the mask folder holds JPEG masks: {JPEG_HINT}"
        items = drop_missing(items, missing, on_bad_sample, where, hint)
        # (id, image, rater masks, slice index of a NIfTI volume or None)
        self.items: list[tuple[str, Path, list[Path], int | None]] = self._slice_volumes(items)
        if not self.items:
            raise DataError(f"the {split} split ({where}) is empty{self._index_note}")
        self._ranges: dict[Path, tuple[float, float]] = {}  # NIfTI intensity range per file
        self._mismatched: tuple[int, int] | None = None
        if mask_resize:
            bad, total = self.size_mismatches()
            if bad:
                logger.info(
                    "data.mask_resize: %d of %d items of the %s split (%s) have masks of another "
                    "size than their image; they are resized to it (nearest neighbour)",
                    bad,
                    total,
                    split,
                    where,
                )

    # ------------------------------------------------------------------ splits and layouts
    def _split_folder(
        self,
        split: str,
        split_dirs: Mapping[str, str] | None,
        splits_dir: str | Path | None,
    ) -> tuple[Path, bool]:
        """The folder indexed for ``split`` and whether all of its items are the split."""
        if not split_dirs:
            return self.root, False
        if splits_dir:
            raise ConfigError(
                "data.folder_split_dirs (one folder per split) and data.folder_splits (list "
                "files) are both set; give one of them"
            )
        unknown = sorted(set(split_dirs) - set(SPLITS))
        if unknown or "train" not in split_dirs:
            raise ConfigError(
                f"data.folder_split_dirs={dict(split_dirs)}: expected a train folder and "
                f"optionally val and test folders (keys {', '.join(SPLITS)})"
            )
        key = split if split in split_dirs else "train"
        folder = self.root / split_dirs[key]
        if not folder.is_dir():
            raise DataError(
                f"split folder not found: {folder} (data.folder_split_dirs.{key}); expected the "
                f"{key} items in the {self.layout} layout"
            )
        # train is the whole train folder only when no other split is carved from it
        whole = key == split and (split != "train" or {"val", "test"} <= set(split_dirs))
        return folder, whole

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
        self, image_pattern: str, mask_pattern: str, splits_dir: str | Path | None
    ) -> tuple[dict[str, Path], dict[str, list[Path]]]:
        images: dict[str, Path] = {}
        masks: dict[str, list[Path]] = {}
        jpeg_masks: list[Path] = []
        folders = sorted(
            p
            for p in self.base.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and not _is_split_folder(p, self.root, splits_dir)
        )
        unmatched: list[Path] = []
        for item in folders:
            files = sorted(p for p in item.iterdir() if p.is_file())
            found = [
                p
                for p in files
                if fnmatch.fnmatch(p.name, image_pattern) and file_extension(p) in IMAGE_EXTENSIONS
            ]
            if not found:
                unmatched.append(item)
                continue
            if len(found) > 1:
                raise DataError(
                    f"{item}: {len(found)} files match data.folder_image_pattern={image_pattern!r} "
                    f"({', '.join(p.name for p in found[:3])}); expected one image per item folder"
                )
            images[item.name] = found[0]
            candidates = [
                p for p in files if p != found[0] and fnmatch.fnmatch(p.name, mask_pattern)
            ]
            masks[item.name] = [p for p in candidates if file_extension(p) in self.mask_extensions]
            jpeg_masks += [p for p in candidates if file_extension(p) in JPEG_EXTENSIONS]
        if unmatched:
            self._index_note = (
                f"; of the {len(folders)} folders in {self.base}, {len(images)} hold a file "
                f"matching data.folder_image_pattern={image_pattern!r} and {len(unmatched)} do "
                f"not (e.g. {_holds(unmatched[0])})"
            )
            nested = [f.name for f in unmatched if any(p.is_dir() for p in f.iterdir())]
            if nested:
                self._index_note += (
                    f"; {', '.join(n + '/' for n in nested[:3])} hold folders: for data split "
                    f"into folders set data.folder_split_dirs, e.g. {{train: {nested[-1]}}}"
                )
            if images:
                logger.warning(
                    "skipping %d of the %d folders in %s: they hold no file matching "
                    "data.folder_image_pattern=%r (e.g. %s)",
                    len(unmatched),
                    len(folders),
                    self.base,
                    image_pattern,
                    _holds(unmatched[0]),
                )
        if not images:
            raise DataError(
                f"{self.base} has no item folders with an image matching "
                f"data.folder_image_pattern={image_pattern!r}; data.folder_layout=per_image "
                "expects <root>/<item>/<image> beside the item's rater masks" + self._index_note
            )
        if not any(masks.values()):
            message = (
                f"the item folders of {self.base} hold no mask files matching "
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
            return f"{self.base / masks}/<rater>/{stem}.* (no rater mask for {image.name})"
        return f"{self.base / masks}/{stem}.* (mask for {image.name})"

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

    # ------------------------------------------------------------------ NIfTI volumes
    def _slice_volumes(
        self, items: list[tuple[str, Path, list[Path]]]
    ) -> list[tuple[str, Path, list[Path], int | None]]:
        """One item per 2D image; one per (kept) slice of a 3D NIfTI volume."""
        out: list[tuple[str, Path, list[Path], int | None]] = []
        volumes = slices = 0
        for stem, image_path, mask_paths in items:
            if not is_nifti(image_path):
                out.append((stem, image_path, mask_paths, None))
                continue
            try:
                image = NiftiImage(image_path)
                if image.ndim == 2:
                    out.append((stem, image_path, mask_paths, None))
                    continue
                n = image.num_slices(self.nifti_axis)
                kept = (
                    self._foreground_slices(image, mask_paths)
                    if self.nifti_slices == "foreground"
                    else list(range(n))
                )
            except DataError as e:
                if self.on_bad_sample == "error":
                    raise
                logger.warning("skipping the volume %s: %s", image_path, e)
                continue
            volumes += 1
            slices += len(kept)
            ids = [f"{stem}:{slice_name(k, self.nifti_axis, n)}" for k in kept]
            out += [(i, image_path, mask_paths, k) for i, k in zip(ids, kept, strict=True)]
        if volumes:
            logger.info(
                "%s split: %d NIfTI volumes -> %d slices along axis %d (data.nifti_slices=%s)",
                self.split,
                volumes,
                slices,
                self.nifti_axis,
                self.nifti_slices,
            )
        return out

    def _foreground_slices(self, image: NiftiImage, mask_paths: list[Path]) -> list[int]:
        """Indices of the slices where some rater's mask holds a class other than background."""
        axis = self.nifti_axis
        keep = np.zeros(image.num_slices(axis), dtype=bool)
        others = tuple(a for a in range(3) if a != axis)
        for path in mask_paths:
            mask = self._nifti_mask(image, path)
            values = mask.read_volume()
            if self.binary_threshold is not None:
                marked = values >= self.binary_threshold
            else:
                labels = integer_labels(values, path)
                marked = (labels != 0) & (labels != self.ignore_index)
            keep |= marked.any(axis=others)
        return np.flatnonzero(keep).tolist()

    def _nifti_mask(self, image: NiftiImage, path: Path) -> NiftiImage:
        if not is_nifti(path):
            raise DataError(
                f"{path}: not a NIfTI file, but its image {image.path} is a 3D volume; expected "
                "NIfTI masks on the image's voxel grid"
            )
        mask = NiftiImage(path)
        check_same_grid(image, mask)
        return mask

    def _nifti_picture(self, image: NiftiImage, index: int | None) -> np.ndarray:
        """(H, W, 3) uint8 slice ``index`` of ``image``, scaled by the file's intensity range."""
        plane = image.read(index, self.nifti_axis)
        if image.path not in self._ranges:
            values = plane if image.ndim == 2 else image.read_volume()
            self._ranges[image.path] = intensity_range(values, self.nifti_intensity, image.path)
        return to_uint8(plane, *self._ranges[image.path])

    # ------------------------------------------------------------------ reading an item
    def __len__(self) -> int:
        return len(self.items)

    def item_group(self, index: int) -> str:
        """The cross-validation group of an item: its volume (``case01`` for ``case01:z012``), so
        the slices of one volume stay in one fold (segcvae.data.folds)."""
        return self.items[index][0].split(":")[0]

    def load(self, index: int) -> Sample:
        item_id, image_path, mask_paths, k = self.items[index]
        volume = NiftiImage(image_path) if is_nifti(image_path) else None
        image = read_image(image_path) if volume is None else self._nifti_picture(volume, k)
        masks = []
        for mask_path in mask_paths:
            if volume is not None and (volume.ndim == 3 or is_nifti(mask_path)):
                mask = self._nifti_mask(volume, mask_path)
                raw = mask.read(k, self.nifti_axis)
            elif is_nifti(mask_path):  # a NIfTI mask of a PNG (or other 2D file) image
                raw = NiftiImage(mask_path).read(None, self.nifti_axis)
            else:
                raw = read_mask(mask_path)
            masks.append(self._resized(self.labels(raw, mask_path), image, image_path, mask_path))
        stacked = np.stack(masks)  # (R, H, W)
        reference = (
            stacked[0]
            if len(masks) == 1
            else majority_vote_np(stacked, self.num_classes, self.ignore_index)
        )
        return Sample(image=image, mask=reference, id=item_id, masks=stacked)

    def _resized(
        self, mask: np.ndarray, image: np.ndarray, image_path: Path, mask_path: Path
    ) -> np.ndarray:
        """``mask`` itself, resized to the image (``mask_resize``) or a DataError if sizes differ."""
        h, w = image.shape[:2]
        if mask.shape == (h, w):
            return mask
        if self.mask_resize:
            return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        message = (
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
            f"{image_path} is {w}x{h}; expected the same size"
        )
        bad, total = self.size_mismatches()
        if bad > 1:
            message += f"; {bad} of the {total} items of the {self.split} split have such masks"
            if 2 * bad > total:
                message += (
                    " (rescaled copies of the masks?): set data.mask_resize=true to resize each "
                    "mask to its image (nearest neighbour)"
                )
        raise DataError(message)

    def size_mismatches(self) -> tuple[int, int]:
        """(items with a mask of another size than their image, items) in this split.

        Read from the file headers (not the pixels) once per process; NIfTI volumes, whose masks
        must share the image's voxel grid, are not counted.
        """
        if self._mismatched is None:
            bad = total = 0
            for _, image_path, mask_paths, k in self.items:
                if k is not None:
                    continue
                total += 1
                size = _picture_size(image_path, self.nifti_axis)
                sizes = {_picture_size(m, self.nifti_axis) for m in mask_paths}
                bad += int(size is not None and any(s not in (None, size) for s in sizes))
            self._mismatched = (bad, total)
        return self._mismatched

    def read_label(self, mask_path: Path) -> np.ndarray:
        """One 2D mask file as (H, W) uint8 class indices; DataError naming the file otherwise."""
        if is_nifti(mask_path):
            return self.labels(NiftiImage(mask_path).read(None, self.nifti_axis), mask_path)
        return self.labels(read_mask(mask_path), mask_path)

    def labels(self, raw: np.ndarray, mask_path: Path) -> np.ndarray:
        """Stored mask values (H, W) or (H, W, 3) -> (H, W) uint8 class indices.

        Raises:
            DataError: naming ``mask_path``: values that are not class indices (or not whole
                numbers), unknown colours, colour masks where grey ones are expected.
        """
        if self.binary_threshold is not None:
            if raw.ndim == 3:
                if int(np.ptp(raw.astype(np.int16), axis=-1).max()) > 64:
                    raise DataError(
                        f"{mask_path}: colour mask; data.binary_threshold expects grey masks "
                        "(set data.folder_palette for RGB label colours instead)"
                    )
                raw = cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
            return (raw >= self.binary_threshold).astype(np.uint8)
        if not np.issubdtype(raw.dtype, np.integer):  # NIfTI masks may be stored as floats
            raw = integer_labels(raw, mask_path)
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
        bad = ((raw >= k) | (raw < 0)) & (raw != self.ignore_index)
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


def check_split_files(cfg: DataConfig, eval_split: str = "val") -> list[str]:
    """Check, when training starts, the split list files or split folders a run will read.

    Training reads the train split and evaluates on ``eval_split`` (``eval.split``): if the file
    or folder of either is missing, that is an error now rather than after the first evaluation.
    A missing one of another split (usually test, read only by ``evaluate --split test``) is a
    warning. Covers ``data.name=folder`` with ``data.folder_splits`` or ``data.folder_split_dirs``
    and ``data.name=qubiq`` (``splits/``); other datasets (and random splits) have nothing to
    check.

    Args:
        cfg: the data config.
        eval_split: the split evaluated during training.

    Returns:
        Warnings (one line each) about splits the run does not need now.

    Raises:
        DataError: naming the missing file or folder of the train or ``eval_split`` split.
    """
    root = Path(cfg.root)
    needed = ("train", eval_split)
    paths: dict[str, tuple[Path, str]] = {}
    if cfg.name == "qubiq" or (cfg.name == "folder" and cfg.folder_splits):
        folder = root / ("splits" if cfg.name == "qubiq" else cfg.folder_splits)
        paths = {s: (folder / f"{s}.txt", "split file") for s in SPLITS}
    elif cfg.name == "folder" and cfg.folder_split_dirs:
        paths = {
            s: (root / d, f"split folder (data.folder_split_dirs.{s})")
            for s, d in cfg.folder_split_dirs.items()
        }
    warnings = []
    for split, (path, what) in paths.items():
        if path.exists():
            continue
        if split in needed:
            role = "trains on" if split == "train" else "evaluates on (eval.split)"
            raise DataError(f"{what} not found: {path}; the run {role} the {split} split")
        warnings.append(
            f"{what} not found: {path}; the {split} split cannot be evaluated "
            f"(evaluate --split {split}) until it exists"
        )
    return warnings


__all__ = ["FolderDataset", "check_split_files", "default_palette"]
