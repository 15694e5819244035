"""The folder dataset's file index: which files are images and masks, per layout and split.

:class:`FolderIndex` is the part of :class:`segcvae.data.folder.FolderDataset` that finds the
items (pairs, per_rater, per_image layouts; split list files, split folders, the seeded random
split); :func:`check_split_files` checks a run's split files when training starts.
"""

from __future__ import annotations

import colorsys
import fnmatch
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import SPLITS
from segcvae.data.files import (
    NIFTI_EXTENSIONS,
    DataError,
    file_extension,
    file_stem,
)
from segcvae.data.nifti import (
    NiftiImage,
    is_nifti,
)

logger = logging.getLogger("segcvae.data.folder")

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
    "JPEG is lossy, so its labels are noisy; set data.folder.binary_threshold=128 to read binary "
    "masks as foreground where value >= 128"
)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Black for class 0, then well-separated hues (golden-ratio steps) for visualisation."""
    colours = [(0, 0, 0)]
    for k in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def index_files(
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
        jpegs = jpeg_files(folder.iterdir()) if what.startswith("mask") else []
        if jpegs:
            message += f"; found {len(jpegs)} JPEG masks (e.g. {jpegs[0].name}): {JPEG_HINT}"
        elif what == "mask" and any(p.is_dir() for p in folder.iterdir()):
            message += (
                "; it holds sub-folders: for one mask folder per rater (masks/<rater>/<stem>.png) "
                "set data.folder.layout=per_rater"
            )
        raise DataError(message)
    return found


def jpeg_files(paths: Any) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in JPEG_EXTENSIONS)


def picture_size(path: Path, axis: int) -> tuple[int, int] | None:
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


class FolderIndex:
    """Finding a folder dataset's items (a mixin of :class:`~segcvae.data.folder.FolderDataset`,
    which sets ``root``, ``base``, ``layout`` and ``mask_extensions`` before calling these)."""

    root: Path
    base: Path
    layout: str
    mask_extensions: tuple[str, ...]
    _index_note: str

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
                "data.folder.split_dirs (one folder per split) and data.folder.splits (list "
                "files) are both set; give one of them"
            )
        unknown = sorted(set(split_dirs) - set(SPLITS))
        if unknown or "train" not in split_dirs:
            raise ConfigError(
                f"data.folder.split_dirs={dict(split_dirs)}: expected a train folder and "
                f"optionally val and test folders (keys {', '.join(SPLITS)})"
            )
        key = split if split in split_dirs else "train"
        folder = self.root / split_dirs[key]
        if not folder.is_dir():
            raise DataError(
                f"split folder not found: {folder} (data.folder.split_dirs.{key}); expected the "
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
                f"mask folder {folder} has no rater sub-folders; data.folder.layout=per_rater "
                "expects masks/<rater>/<stem>.png (for masks/<stem>.png use folder_layout=pairs)"
            )
        found: dict[str, list[Path]] = {}
        for rater in raters:
            for stem, path in index_files(
                rater, self.mask_extensions, f"mask (rater {rater.name})", allow_empty=True
            ).items():
                found.setdefault(stem, []).append(path)
        if not found:
            jpegs = [j for r in raters for j in jpeg_files(r.iterdir())]
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
                    f"{item}: {len(found)} files match data.folder.image_pattern={image_pattern!r} "
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
                f"matching data.folder.image_pattern={image_pattern!r} and {len(unmatched)} do "
                f"not (e.g. {_holds(unmatched[0])})"
            )
            nested = [f.name for f in unmatched if any(p.is_dir() for p in f.iterdir())]
            if nested:
                self._index_note += (
                    f"; {', '.join(n + '/' for n in nested[:3])} hold folders: for data split "
                    f"into folders set data.folder.split_dirs, e.g. {{train: {nested[-1]}}}"
                )
            if images:
                logger.warning(
                    "skipping %d of the %d folders in %s: they hold no file matching "
                    "data.folder.image_pattern=%r (e.g. %s)",
                    len(unmatched),
                    len(folders),
                    self.base,
                    image_pattern,
                    _holds(unmatched[0]),
                )
        if not images:
            raise DataError(
                f"{self.base} has no item folders with an image matching "
                f"data.folder.image_pattern={image_pattern!r}; data.folder.layout=per_image "
                "expects <root>/<item>/<image> beside the item's rater masks" + self._index_note
            )
        if not any(masks.values()):
            message = (
                f"the item folders of {self.base} hold no mask files matching "
                f"data.folder.mask_pattern={mask_pattern!r} with extensions "
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


def check_split_files(cfg: DataConfig, eval_split: str = "val") -> list[str]:
    """Check, when training starts, the split list files or split folders a run will read.

    Training reads the train split and evaluates on ``eval_split`` (``eval.split``): if the file
    or folder of either is missing, that is an error now rather than after the first evaluation.
    A missing one of another split (usually test, read only by ``evaluate --split test``) is a
    warning. Covers ``data.name=folder`` with ``data.folder.splits`` or ``data.folder.split_dirs``
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
    own = cfg.settings("folder") if cfg.name == "folder" else None
    if cfg.name == "qubiq" or (own is not None and own.splits):
        folder = root / ("splits" if own is None else own.splits)
        paths = {s: (folder / f"{s}.txt", "split file") for s in SPLITS}
    elif own is not None and own.split_dirs:
        paths = {
            s: (root / d, f"split folder (data.folder.split_dirs.{s})")
            for s, d in own.split_dirs.items()
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


__all__ = [
    "IMAGE_EXTENSIONS",
    "JPEG_EXTENSIONS",
    "LAYOUTS",
    "MASK_EXTENSIONS",
    "FolderIndex",
    "check_split_files",
    "default_palette",
    "index_files",
    "jpeg_files",
    "picture_size",
]
