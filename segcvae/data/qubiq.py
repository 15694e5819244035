"""QUBIQ 2020 brain growth: 2D neonatal brain MRI slices, each segmented by seven raters.

Expected layout under ``root`` (the challenge's own naming, NIfTI converted to PNG; see
datasets/qubiq/README.md)::

    caseNN/image.png           8-bit grayscale slice (read as 3-channel RGB)
    caseNN/task01_segKK.png    rater KK's mask, values 0 (background) / 1 (brain growth)
    splits/train.txt val.txt test.txt   one case id a line

Every item carries all rater masks in ``masks`` (R, H, W); ``mask`` is their majority vote (with
seven raters there are no ties).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from segcvae.config import DataConfig
from segcvae.data.base import dataset_root
from segcvae.data.files import DataError
from segcvae.data.folder import FolderDataset

CLASS_NAMES = ["background", "brain growth"]
PALETTE = [(0, 0, 0), (255, 200, 40)]


class QUBIQDataset(FolderDataset):
    """The QUBIQ brain-growth task: one folder per case with the image and its rater masks.

    Args:
        root: the folder holding ``caseNN/`` and ``splits/``.
        split: "train", "val" or "test" (``splits/<split>.txt``).
        task: rater files are ``<task>_segKK.png``; brain growth has one task, ``task01``.
        transform: albumentations transform applied to the image and all rater masks together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: mask value excluded from losses (QUBIQ masks never use it).
    """

    settings = None  # the layout is fixed: no data.qubiq settings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> QUBIQDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        return cls(
            root=dataset_root(cfg),
            split=split,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
        )

    def __init__(
        self,
        root: str | Path,
        split: str,
        task: str = "task01",
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"QUBIQ root not found: {root}; expected a folder with caseNN/ and splits/"
            )
        if not (root / "splits").is_dir():
            raise DataError(
                f"QUBIQ split folder not found: {root / 'splits'}; expected train.txt, val.txt "
                "and test.txt listing case ids"
            )
        super().__init__(
            root=root,
            split=split,
            class_names=CLASS_NAMES,
            splits_dir="splits",
            transform=transform,
            on_bad_sample=on_bad_sample,
            ignore_index=ignore_index,
            layout="per_image",
            image_pattern="image.png",
            mask_pattern=f"{task}_seg*.png",
        )
        self.palette = list(PALETTE)


__all__ = ["QUBIQDataset"]
