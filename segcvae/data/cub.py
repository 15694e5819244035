"""CUB-200-2011 birds with the per-image foreground segmentations.

Expected layout under ``root`` (the official archives extracted side by side; see
datasets/cub/README.md)::

    CUB_200_2011/images.txt  train_test_split.txt  bounding_boxes.txt
    CUB_200_2011/images/<NNN.Class_Name>/<stem>.jpg
    segmentations/<NNN.Class_Name>/<stem>.png        (or elsewhere: ``segmentations_dir``)

Splits: "test" is the official test list; "train" and "val" split the official training list,
"val" being a seeded fraction (``val_ratio``, seed ``split_seed``) drawn from all 5,994 official
training images before any class subset is taken, so an image's split never depends on the subset.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import (
    Sample,
    SegmentationDataset,
    check_same_size,
    dataset_root,
    drop_missing,
)
from segcvae.data.files import DataError, read_image, read_mask
from segcvae.settings import setting

META_FILES = ("images.txt", "train_test_split.txt", "bounding_boxes.txt")


def _read_table(path: Path, columns: int) -> dict[int, list[str]]:
    """Read ``<image_id> <value> ...`` lines into {image_id: values}."""
    if not path.is_file():
        raise DataError(f"CUB metadata file not found: {path}")
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != columns + 1 or not parts[0].isdigit():
            raise DataError(
                f"{path}, line {number}: {line!r}; expected '<image_id>' and {columns} value(s)"
            )
        table[int(parts[0])] = parts[1:]
    if not table:
        raise DataError(f"{path}: empty metadata file")
    return table


@dataclass
class CUBSettings:
    """The CUB dataset's own settings (``data.cub.<key>``; datasets/cub/README.md)."""

    classes: list[int] | None = setting(None, help="class ids to use (1-200); null = all listed")
    segmentations: str = setting("", help='<class>/<stem>.png masks; "" = <root>/segmentations')
    crop: bool = setting(False, help="crop to the bounding box")
    crop_margin: float = setting(0.1, ge=0, help="margin around the box, a fraction of its size")
    mask_threshold: int = setting(128, ge=0, le=255, help="foreground = segmentation >= this")
    val_ratio: float = setting(
        0.1, ge=0, lt=1, help="val = this seeded (data.split_seed) fraction of the train list"
    )

    def validate(self, prefix: str) -> None:
        """Class ids are 1..200."""
        if self.classes is not None and (
            not self.classes or any(not 1 <= c <= 200 for c in self.classes)
        ):
            raise ConfigError(
                f"{prefix}.classes: expected null or a non-empty list of class ids 1..200, got "
                f"{self.classes!r}"
            )


class CUBDataset(SegmentationDataset):
    """CUB-200-2011 bird / background segmentation.

    Args:
        root: folder holding ``CUB_200_2011/`` (and, by default, ``segmentations/``).
        split: "train", "val" or "test" (see the module docstring).
        classes: class ids (1-200) to use; None = every class in ``images.txt``.
        segmentations_dir: folder of ``<class>/<stem>.png`` masks; None = ``root/segmentations``.
        mask_threshold: a pixel is "bird" where the (0-255 annotator average) mask is >= this.
        crop: crop image and mask to the bounding box (plus ``crop_margin``).
        crop_margin: margin on each side, as a fraction of the box width / height.
        val_ratio: fraction of the official training images held out as "val".
        split_seed: seed of the train / val draw.
        transform: albumentations transform applied to image and mask together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: mask value excluded from losses (CUB masks never use it).
    """

    class_names = ["background", "bird"]
    palette = [(0, 0, 0), (255, 160, 0)]
    settings = CUBSettings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> CUBDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        s = cfg.settings("cub")
        return cls(
            root=dataset_root(cfg),
            split=split,
            classes=s.classes,
            segmentations_dir=s.segmentations or None,
            mask_threshold=s.mask_threshold,
            crop=s.crop,
            crop_margin=s.crop_margin,
            val_ratio=s.val_ratio,
            split_seed=cfg.split_seed,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
        )

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[int] | None = None,
        segmentations_dir: str | Path | None = None,
        mask_threshold: int = 128,
        crop: bool = False,
        crop_margin: float = 0.1,
        val_ratio: float = 0.1,
        split_seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"val_ratio={val_ratio}; expected 0 <= val_ratio < 1")
        if not 0 <= mask_threshold <= 255:
            raise ValueError(f"mask_threshold={mask_threshold}; expected 0..255")
        if crop_margin < 0:
            raise ValueError(f"crop_margin={crop_margin}; expected >= 0")
        self.root = Path(root)
        self.meta_dir = self.root / "CUB_200_2011"
        if not self.meta_dir.is_dir():
            raise DataError(f"CUB folder not found: {self.meta_dir}; expected root/CUB_200_2011/")
        self.image_dir = self.meta_dir / "images"
        if not self.image_dir.is_dir():
            raise DataError(f"CUB images not found: {self.image_dir}")
        self.seg_dir = Path(segmentations_dir) if segmentations_dir else self.root / "segmentations"
        if not self.seg_dir.is_dir():
            raise DataError(
                f"CUB segmentation folder not found: {self.seg_dir}; expected "
                "segmentations/<class>/<stem>.png from the separate segmentations archive, "
                "extracted beside CUB_200_2011/ (or set data.cub.segmentations)"
            )
        self.mask_threshold = mask_threshold
        self.crop = crop
        self.crop_margin = crop_margin

        paths = _read_table(self.meta_dir / "images.txt", 1)
        is_train = _read_table(self.meta_dir / "train_test_split.txt", 1)
        boxes = _read_table(self.meta_dir / "bounding_boxes.txt", 4)
        for name, table in (("train_test_split.txt", is_train), ("bounding_boxes.txt", boxes)):
            absent = sorted(set(paths) - set(table))
            if absent:
                raise DataError(
                    f"{self.meta_dir / name}: no entry for image id {absent[0]} "
                    f"({len(absent)} ids of images.txt missing)"
                )

        train_ids = sorted(i for i in paths if is_train[i][0] == "1")
        order = np.random.default_rng(split_seed).permutation(len(train_ids))
        val_ids = {train_ids[k] for k in order[: round(val_ratio * len(train_ids))]}
        if split == "test":
            wanted = [i for i in sorted(paths) if is_train[i][0] != "1"]
        elif split == "val":
            wanted = sorted(val_ids)
        else:
            wanted = [i for i in train_ids if i not in val_ids]

        if classes is not None:
            bad = [c for c in classes if not 1 <= int(c) <= 200]
            if bad:
                raise ValueError(f"cub classes {bad} out of range; expected class ids 1-200")
            listed = {int(p[0].split(".", 1)[0]) for p in paths.values()}
            unknown = sorted(set(int(c) for c in classes) - listed)
            if unknown:
                raise DataError(
                    f"{self.meta_dir / 'images.txt'}: lists no image of class {unknown}"
                )
            keep = {int(c) for c in classes}
            wanted = [i for i in wanted if int(paths[i][0].split(".", 1)[0]) in keep]

        self.items: list[tuple[str, tuple[float, float, float, float]]] = []
        missing = []
        for i in wanted:
            rel = paths[i][0]
            image, mask = self.image_dir / rel, self.mask_path(rel)
            absent = [str(p) for p in (image, mask) if not p.is_file()]
            if absent:
                missing.append(", ".join(absent))
            else:
                box = tuple(float(v) for v in boxes[i])
                self.items.append((rel, box))  # type: ignore[arg-type]
        hint = "" if classes is not None else "set data.cub.classes to the classes you have"
        self.items = drop_missing(self.items, missing, on_bad_sample, "images.txt", hint)
        if not self.items:
            raise DataError(f"the CUB {split} split is empty (classes={classes})")

    def mask_path(self, rel: str) -> Path:
        """``segmentations/<class>/<stem>.png`` for the ``images.txt`` path ``<class>/<stem>.jpg``."""
        return self.seg_dir / Path(rel).with_suffix(".png")

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        rel, (x, y, w, h) = self.items[index]
        image_path, mask_path = self.image_dir / rel, self.mask_path(rel)
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if raw.ndim == 3:  # a colour-saved mask: its grey level is the annotator average
            raw = cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
        if raw.dtype == np.uint16:
            raw = (raw >> 8).astype(np.uint8)
        mask = (raw >= self.mask_threshold).astype(np.uint8)
        sample = Sample(image=image, mask=mask, id=Path(rel).stem)
        check_same_size(sample, image_path, mask_path)
        if self.crop:
            height, width = mask.shape
            mx, my = self.crop_margin * w, self.crop_margin * h
            x0, y0 = max(0, math.floor(x - mx)), max(0, math.floor(y - my))
            x1, y1 = min(width, math.ceil(x + w + mx)), min(height, math.ceil(y + h + my))
            if x1 <= x0 or y1 <= y0:
                raise DataError(
                    f"{image_path}: bounding box {(x, y, w, h)} lies outside the "
                    f"{width}x{height} image; expected a box inside it"
                )
            sample.image = np.ascontiguousarray(image[y0:y1, x0:x1])
            sample.mask = np.ascontiguousarray(mask[y0:y1, x0:x1])
        return sample


__all__ = ["CUBDataset"]
