"""Any folder of images and masks matched by name: how users bring their own data.

Three layouts under ``root`` (``data.folder.layout``; see datasets/folder/README.md)::

    pairs (default)   images/<stem>.<jpg|png|...>
                      masks/<stem>.png                one mask per image
    per_rater         images/<stem>.<jpg|png|...>
                      masks/<rater>/<stem>.png        one folder per rater; an image has as many
                                                      masks as rater folders hold its stem
    per_image         <item>/image.png                one folder per image holding the image and
                      <item>/*seg*.png                its rater masks (file-name globs configurable)
    splits/train.txt val.txt test.txt   optional: one stem (per_image: item folder name) per line

With ``split_dirs`` (``data.folder.split_dirs``, e.g. ``{train: training, test: testing}``) each
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

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import SegmentationDataset, dataset_root, drop_missing
from segcvae.data.files import (
    DataError,
    file_extension,
    file_stem,
    read_id_list,
)
from segcvae.data.folder_index import (
    IMAGE_EXTENSIONS,
    JPEG_EXTENSIONS,
    JPEG_HINT,
    LAYOUTS,
    MASK_EXTENSIONS,
    FolderIndex,
    check_split_files,
    default_palette,
    index_files,
    jpeg_files,
)
from segcvae.data.folder_read import FolderReading
from segcvae.data.nifti import (
    SLICE_SELECTIONS,
    check_axis,
    intensity_range,
)
from segcvae.settings import setting

logger = logging.getLogger(__name__)


@dataclass
class FolderSettings:
    """The folder dataset's own settings (``data.folder.<key>``; datasets/folder/README.md)."""

    images: str = setting("images", help="sub-folder of root with the images")
    masks: str = setting("masks", help="sub-folder of root with the masks (matched by file stem)")
    palette: list[list[int]] | None = setting(None, help="RGB colour per class; null = index masks")
    classes: list[str] | None = setting(
        None, help="class names (index masks need them); null = class_k"
    )
    splits: str = setting("", help='folder with train.txt / val.txt / test.txt; "" = random split')
    val_ratio: float = setting(0.1, ge=0, lt=1, help="share of the items in val when no split says")
    test_ratio: float = setting(
        0.1, ge=0, lt=1, help="share of the items in test when no split says"
    )
    # --- multi-rater and binary masks (issue 12; folder, see datasets/folder/README.md)
    # single-channel masks -> class 1 where value >= threshold, else 0 (0/255 PNGs, JPEG masks);
    # None = masks hold class indices
    binary_threshold: int | None = None
    # layout: pairs = images/<stem> + masks/<stem>.png (one mask per image);
    # per_image = <root>/<item>/ holds the image and its rater masks (patterns below);
    # per_rater = images/<stem> + masks/<rater>/<stem>.png (any number of raters per image)
    layout: Literal["pairs", "per_image", "per_rater"] = "pairs"
    image_pattern: str = setting("image.*", help="per_image: glob of the image in an item folder")
    mask_pattern: str = setting("*seg*", help="per_image: glob of the rater mask files")
    # --- data as it is published (issues 25, 26; datasets/folder/README.md)
    # one sub-folder of root per split, e.g. {train: training, test: testing}, each in the layout
    # above; a split not named is carved from train by val_ratio / test_ratio
    split_dirs: dict[str, str] | None = None
    mask_resize: bool = setting(False, help="resize a mask of another size to its image (nearest)")
    # NIfTI (.nii, .nii.gz; pip install -e ".[medical]"): 3D volumes are sliced along this axis
    # (0, 1, 2 = x, y, z), one item per slice; all slices, or those where a rater marked foreground
    nifti_axis: int = setting(2, ge=0, le=2)
    nifti_slices: Literal["all", "foreground"] = "all"  # foreground: only slices a rater marked
    # per file: percentile = clip to the 0.5 / 99.5 percentiles, scale to [0, 1]; minmax = scale
    # min..max to [0, 1]; none = already 8-bit (0..255); then x255 -> uint8 (segcvae/data/nifti.py)
    nifti_intensity: Literal["percentile", "minmax", "none"] = "percentile"

    def validate(self, prefix: str) -> None:
        """The palette, the class names and the split folders agree with each other."""
        if self.palette is not None:
            bad = [c for c in self.palette if len(c) != 3 or not all(0 <= v <= 255 for v in c)]
            _require(
                bool(self.palette) and not bad,
                f"{prefix}.palette",
                "a non-empty list of [R, G, B] colours in 0..255",
                bad or self.palette,
            )
            colours = [tuple(c) for c in self.palette]
            _require(
                len(set(colours)) == len(colours),
                f"{prefix}.palette",
                "one distinct colour per class",
                self.palette,
            )
            if self.classes is not None:
                _require(
                    len(self.classes) == len(self.palette),
                    f"{prefix}.classes",
                    f"one name per {prefix}.palette colour ({len(self.palette)})",
                    self.classes,
                )
        if self.classes is not None:
            _require(
                1 <= len(self.classes) <= 255,
                f"{prefix}.classes",
                "1 to 255 class names",
                self.classes,
            )
        if self.split_dirs is not None:
            dirs = self.split_dirs
            _require(
                "train" in dirs
                and set(dirs) <= {"train", "val", "test"}
                and all(isinstance(d, str) and d for d in dirs.values()),
                f"{prefix}.split_dirs",
                "a mapping of train (required), val, test to sub-folders of data.root, e.g. "
                "{train: training, test: testing}",
                dirs,
            )
            _require(
                not self.splits,
                f"{prefix}.splits",
                f'"" with {prefix}.split_dirs (split folders and split list files exclude '
                "each other)",
                self.splits,
            )

    def validate_in_use(self, prefix: str) -> None:
        """With ``data.name=folder`` the number of classes must be known."""
        _require(
            self.palette is not None
            or self.classes is not None
            or self.binary_threshold is not None,
            f"{prefix}.classes",
            f"class names for index masks (or {prefix}.palette for RGB masks, or "
            f"{prefix}.binary_threshold for binary masks) with data.name=folder",
            None,
        )


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


class FolderDataset(FolderIndex, FolderReading, SegmentationDataset):
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

    settings = FolderSettings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> FolderDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        s = cfg.settings("folder")
        return cls(
            root=dataset_root(cfg),
            split=split,
            images=s.images,
            masks=s.masks,
            palette=s.palette,
            class_names=s.classes,
            splits_dir=s.splits or None,
            val_ratio=s.val_ratio,
            test_ratio=s.test_ratio,
            split_seed=cfg.split_seed,
            colour_tolerance=cfg.colour_tolerance,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
            layout=s.layout,
            image_pattern=s.image_pattern,
            mask_pattern=s.mask_pattern,
            binary_threshold=s.binary_threshold,
            split_dirs=s.split_dirs,
            mask_resize=s.mask_resize,
            nifti_axis=s.nifti_axis,
            nifti_slices=s.nifti_slices,
            nifti_intensity=s.nifti_intensity,
        )

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
                f"data.folder.layout={layout!r}; expected one of {', '.join(LAYOUTS)}"
            )
        if binary_threshold is not None:
            if palette is not None:
                raise ConfigError(
                    "data.folder.binary_threshold reads single-channel masks into two classes; it cannot "
                    "be combined with data.folder.palette (RGB label colours)"
                )
            if not 1 <= binary_threshold <= 65535:
                raise ConfigError(
                    f"data.folder.binary_threshold={binary_threshold}; expected 1..255 (8-bit masks) "
                    "or up to 65535 (16-bit)"
                )
            if class_names is None:
                class_names = ["background", "foreground"]
            elif len(class_names) != 2:
                raise ConfigError(
                    f"data.folder.binary_threshold gives two classes but data.folder.classes has "
                    f"{len(class_names)} ({list(class_names)}); expected [background, <object>]"
                )
        if palette is None and class_names is None:
            raise ValueError(
                "folder dataset: set data.folder.classes (index masks) or data.folder.palette "
                "(RGB masks) so the number of classes is known, or data.folder.binary_threshold "
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
                f"data.folder.nifti_slices={nifti_slices!r}; expected one of {', '.join(SLICE_SELECTIONS)}"
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
            image_files = index_files(base / images, IMAGE_EXTENSIONS, "image")
            if layout == "pairs":
                mask_files = {
                    s: [p]
                    for s, p in index_files(base / masks, self.mask_extensions, "mask").items()
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
            if jpeg_home is not None and jpeg_home.is_dir() and jpeg_files(jpeg_home.iterdir()):
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
                    "data.folder.mask_resize: %d of %d items of the %s split (%s) have masks of another "
                    "size than their image; they are resized to it (nearest neighbour)",
                    bad,
                    total,
                    split,
                    where,
                )

    def __len__(self) -> int:
        return len(self.items)

    def item_group(self, index: int) -> str:
        """The cross-validation group of an item: its volume (``case01`` for ``case01:z012``), so
        the slices of one volume stay in one fold (segcvae.data.folds)."""
        return self.items[index][0].split(":")[0]


__all__ = ["FolderDataset", "FolderSettings", "check_split_files", "default_palette"]
