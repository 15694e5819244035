"""LFW Part Labels: face / hair / background labels for 2,927 lfw_funneled images.

Expected layout under ``root`` (see datasets/lfw/README.md)::

    lfw_funneled/<Name>/<Name>_NNNN.jpg
    parts_lfw_funneled_gt_images/<Name>_NNNN.ppm     (or elsewhere: ``masks_dir``)
    parts_train.txt  parts_validation.txt  parts_test.txt
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segcvae.data.base import Sample, SegmentationDataset, check_same_size, drop_missing
from segcvae.data.files import DataError, colours_to_index, read_image, read_mask

MASKS_FOLDER = "parts_lfw_funneled_gt_images"
SPLIT_FILES = {"train": "parts_train.txt", "val": "parts_validation.txt", "test": "parts_test.txt"}
_LINE = re.compile(r"^(\S+)\s+(\d+)$")


def read_lfw_split(path: Path) -> list[str]:
    """Parse an official ``parts_*.txt`` file into ids ``<Name>_NNNN``.

    Each line is ``<Name> <N>``; N may be unpadded (``Dianne_Feinstein 2``) and is formatted
    as ``%04d``.

    Raises:
        DataError: the file is missing, a line is malformed, or the file lists nothing.
    """
    if not path.is_file():
        raise DataError(f"LFW split file not found: {path}; expected the official {path.name}")
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise DataError(f"{path}, line {number}: {line!r}; expected '<Name> <number>'")
        ids.append(f"{match.group(1)}_{int(match.group(2)):04d}")
    if not ids:
        raise DataError(f"{path}: split file lists no images")
    return ids


class LFWPartsDataset(SegmentationDataset):
    """LFW Part Labels with the official splits (train 1,500 / val 500 / test 927).

    Classes: 0 background, 1 skin (face), 2 hair, read from the label colours
    (0, 0, 255), (0, 255, 0) and (255, 0, 0).

    Args:
        root: folder holding ``lfw_funneled/``, the ``parts_*.txt`` files and the labels.
        split: "train", "val" (``parts_validation.txt``) or "test".
        masks_dir: folder of the extracted ``<Name>_NNNN.ppm`` labels; None means
            ``root/parts_lfw_funneled_gt_images``.
        colour_tolerance: 0 = exact label colours only; > 0 = map a pixel to the nearest label
            colour within this per-channel distance (for JPEG-noisy label copies).
        transform: albumentations transform applied to image and mask together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: mask value excluded from losses (LFW labels never use it).
    """

    class_names = ["background", "skin", "hair"]
    palette = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]  # the label colours themselves

    def __init__(
        self,
        root: str | Path,
        split: str,
        masks_dir: str | Path | None = None,
        colour_tolerance: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        self.root = Path(root)
        self.colour_tolerance = colour_tolerance
        if not self.root.is_dir():
            raise DataError(
                f"LFW root not found: {self.root}; expected a folder with lfw_funneled/"
            )
        self.image_dir = self.root / "lfw_funneled"
        if not self.image_dir.is_dir():
            raise DataError(
                f"LFW images not found: {self.image_dir}; expected lfw_funneled/<Name>/"
            )
        self.masks_dir = Path(masks_dir) if masks_dir else self.root / MASKS_FOLDER
        if not self.masks_dir.is_dir():
            archive = self.root / f"{MASKS_FOLDER}.tgz"
            if not masks_dir and archive.is_file():
                raise DataError(
                    f"LFW labels are still packed in {archive}; extract them once with "
                    f"`tar xzf {archive} -C {self.root}` (or extract elsewhere and set "
                    "data.lfw_masks to the extracted folder)"
                )
            raise DataError(
                f"LFW label folder not found: {self.masks_dir}; expected <Name>_NNNN.ppm files "
                f"from {MASKS_FOLDER}.tgz"
            )
        split_file = self.root / SPLIT_FILES[split]
        complete, missing = [], []
        for item_id in read_lfw_split(split_file):
            image, mask = self.image_path(item_id), self.mask_path(item_id)
            absent = [str(p) for p in (image, mask) if not p.is_file()]
            if absent:
                missing.append(", ".join(absent))
            else:
                complete.append(item_id)
        self.ids = drop_missing(complete, missing, on_bad_sample, str(split_file))
        if not self.ids:
            raise DataError(f"the {split} split ({split_file}) has no usable items")

    def image_path(self, item_id: str) -> Path:
        """``lfw_funneled/<Name>/<Name>_NNNN.jpg`` for id ``<Name>_NNNN``."""
        return self.image_dir / item_id[:-5] / f"{item_id}.jpg"

    def mask_path(self, item_id: str) -> Path:
        """``<masks_dir>/<Name>_NNNN.ppm`` for id ``<Name>_NNNN``."""
        return self.masks_dir / f"{item_id}.ppm"

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        item_id = self.ids[index]
        image_path, mask_path = self.image_path(item_id), self.mask_path(item_id)
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if raw.ndim != 3:
            raise DataError(f"{mask_path}: single-channel label image; expected RGB label colours")
        mask = colours_to_index(
            raw, self.palette, mask_path, self.class_names, self.colour_tolerance
        )
        sample = Sample(image=image, mask=mask, id=item_id)
        check_same_size(sample, image_path, mask_path)
        return sample


__all__ = ["LFWPartsDataset", "read_lfw_split"]
