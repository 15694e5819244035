"""Shared behaviour of all datasets: the item contract, transforms, and bad-sample handling."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from segcvae.data.files import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BAD_SAMPLE_POLICIES = ("error", "skip")


@dataclass
class Sample:
    """One raw item before transforms.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) uint8 class indices (``ignore_index`` allowed): the reference mask (the only
            mask, the majority vote of the raters, or a seeded choice among plausible masks).
        id: a name that identifies the item within its dataset.
        masks: (R, H, W) uint8, all rater / plausible masks; None = just ``mask`` (R = 1).
        mask_probs: (R,) probabilities of ``masks`` (summing to 1) where the data knows them (the
            modes of the embedded ambiguity kinds, flipped LFW); None = the masks are equally
            likely (raters, or modes of equal probability). The same mask may appear twice and a
            probability may be 0 (a dataset keeps R fixed); metrics merge identical masks.
    """

    image: np.ndarray
    mask: np.ndarray
    id: str
    masks: np.ndarray | None = None
    mask_probs: np.ndarray | None = None


def dataset_root(cfg: Any) -> str:
    """``data.root``, or a :class:`DataError` saying the dataset needs its folder."""
    if not cfg.root:
        raise DataError(f"data.root is empty; the {cfg.name} dataset needs its folder")
    return cfg.root


def check_split(split: str) -> str:
    """Return ``split`` if it is one of train / val / test, else raise ValueError."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def check_same_size(sample: Sample, image_path: Any, mask_path: Any) -> None:
    """Raise DataError naming both files if the image and mask sizes differ."""
    if sample.image.shape[:2] != sample.mask.shape[:2]:
        raise DataError(
            f"{mask_path}: mask is {sample.mask.shape[1]}x{sample.mask.shape[0]} (WxH) but its "
            f"image {image_path} is {sample.image.shape[1]}x{sample.image.shape[0]}; expected the "
            "same size"
        )


def drop_missing(
    items: list[Any],
    missing: list[str],
    on_bad_sample: str,
    what: str,
    hint: str = "",
) -> list[Any]:
    """Apply the bad-sample policy to items whose files are missing.

    Args:
        items: the items that are complete.
        missing: descriptions (paths) of the files that are missing, one per incomplete item.
        on_bad_sample: "error" raises, "skip" logs the count and keeps ``items``.
        what: which list the items came from (named in the message).
        hint: extra advice appended to the message.
    """
    if not missing:
        return items
    total = len(items) + len(missing)
    shown = "; ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
    message = f"{len(missing)} of {total} items listed in {what} have missing files: {shown}"
    if hint:
        message += f" ({hint})"
    if on_bad_sample == "error":
        raise DataError(message)
    logger.warning("skipping %s", message)
    return items


class SegmentationDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index) -> Sample``.

    ``__getitem__`` returns ``{"image", "mask", "masks", "id"}`` (and ``"mask_probs"``, (R,)
    float32, where the items know their masks' probabilities): ``masks`` holds every rater /
    plausible mask of the image (R >= 1; a single-mask dataset has R = 1 and ``masks[0]`` equals
    ``mask``), ``mask`` is the reference mask. Without a transform the image is (H, W, 3) uint8 and
    the masks int64 numpy ((H, W) and (R, H, W)); with an albumentations transform ending in
    ``ToTensorV2`` the image is a float tensor (3, H, W) and the masks int64 tensors (the same
    geometric transform is applied to the image and to every mask).

    Subclasses whose ``masks`` are the complete set of plausible answers (not a sample of raters)
    set ``masks_are_modes = True``; evaluation then reports mode purity and coverage.

    Bad items: with ``on_bad_sample="error"`` a :class:`DataError` naming the file propagates; with
    ``"skip"`` the item is replaced by the next readable one, and every skip is logged (warning)
    with the number of distinct items skipped so far, :attr:`num_skipped`. After
    :meth:`share_skips` (the training and evaluation loaders call it before starting workers) the
    record of bad items lives in shared memory: DataLoader workers, in every epoch, skip an item
    any of them found bad without reading it again, and the count covers them all.

    Augmentation randomness follows torch's seeding, as the DataLoader's own does: the transform
    is reseeded from ``torch.initial_seed()`` in the main process and from the per-worker seed in
    each DataLoader worker, so workers never repeat each other's flips and blocks.

    Attributes:
        class_names: one name per class, index order.
        palette: one RGB colour per class, for visualisation.
        ignore_index: mask value excluded from losses and metrics.
    """

    class_names: list[str]
    palette: list[tuple[int, int, int]]
    masks_are_modes: bool = False
    #: the dataset's own settings dataclass, read from ``data.<name>`` (None: it has none)
    settings: type | None = None

    @classmethod
    def from_config(
        cls, cfg: Any, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> SegmentationDataset:
        """The split ``split`` as the data section ``cfg`` describes it (each dataset's own).

        Args:
            cfg: the ``data`` section of the config (its settings: ``cfg.settings(name)``).
            split: "train", "val" or "test".
            transform: albumentations transform, or None for raw numpy items.
        """
        raise NotImplementedError(f"{cls.__name__} is not built from a config")

    def __init__(
        self,
        split: str,
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(
                f"on_bad_sample={on_bad_sample!r}; valid values: {', '.join(BAD_SAMPLE_POLICIES)}"
            )
        if not 0 <= ignore_index <= 255:
            raise ValueError(
                f"ignore_index={ignore_index}; expected 0..255 (masks are read as 8-bit labels)"
            )
        self.split = check_split(split)
        self.transform = transform
        self.on_bad_sample = on_bad_sample
        self.ignore_index = ignore_index
        self._bad: dict[int, str] = {}  # index -> why, for the items this process found bad
        self._skipped: torch.Tensor | None = None  # (N,) bool in shared memory, see share_skips
        self._transform_seed: int | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (background included)."""
        return len(self.class_names)

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def num_skipped(self) -> int:
        """Distinct items skipped so far: by this process, or by every process after
        :meth:`share_skips`."""
        if self._skipped is not None:
            return int(self._skipped.sum())
        return len(self._bad)

    def share_skips(self) -> None:
        """Keep the record of skipped items in shared memory from now on.

        Call it in the main process before a DataLoader starts its workers: they inherit the
        record, mark the bad items they find in it and skip those found by the others.
        """
        if self._skipped is not None:
            return
        flags = torch.zeros(len(self), dtype=torch.bool)
        flags[list(self._bad)] = True
        self._skipped = flags.share_memory_()

    def load(self, index: int) -> Sample:
        """Read item ``index`` without transforms; raise DataError for a bad item."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a split of {n} items")
        index %= n
        for step in range(n):
            j = (index + step) % n
            if j in self._bad or (self._skipped is not None and bool(self._skipped[j])):
                continue
            try:
                sample = self.load(j)
            except DataError as e:
                if self.on_bad_sample == "error":
                    raise
                self._bad[j] = str(e)
                if self._skipped is not None:
                    self._skipped[j] = True
                logger.warning(
                    "skipping bad item %d of the %s split (%s); %d skipped so far (distinct "
                    "items, of %d)",
                    j,
                    self.split,
                    e,
                    self.num_skipped,
                    n,
                )
                continue
            return self._finish(sample)
        raise DataError(f"no readable item in the {self.split} split: all {n} items are bad")

    def _finish(self, sample: Sample) -> dict[str, Any]:
        masks = sample.masks if sample.masks is not None else sample.mask[None]  # (R, H, W)
        extra = {}
        if sample.mask_probs is not None:  # (R,) float32; absent = equally likely masks
            extra["mask_probs"] = np.asarray(sample.mask_probs, np.float32)
        if self.transform is None:
            return {
                "image": sample.image,
                "mask": sample.mask.astype(np.int64),
                "masks": masks.astype(np.int64),
                "id": sample.id,
                **extra,
            }
        self._seed_transform()
        out = self.transform(image=sample.image, mask=sample.mask, masks=masks)
        return {
            "image": out["image"],
            "mask": _as_long(out["mask"]),
            "masks": _as_long(out["masks"]),
            "id": sample.id,
            **extra,
        }

    def _seed_transform(self) -> None:
        set_seed = getattr(self.transform, "set_random_seed", None)
        if set_seed is None:
            return
        info = torch.utils.data.get_worker_info()
        seed = (info.seed if info is not None else torch.initial_seed()) % 2**32
        if seed != self._transform_seed:
            set_seed(seed)
            self._transform_seed = seed


def _as_long(mask: Any) -> Any:
    if isinstance(mask, torch.Tensor):
        return mask.long()
    if isinstance(mask, (list, tuple)):
        return torch.stack([torch.as_tensor(np.asarray(m)) for m in mask]).long()
    return np.asarray(mask).astype(np.int64)


__all__ = [
    "BAD_SAMPLE_POLICIES",
    "SPLITS",
    "Sample",
    "SegmentationDataset",
    "check_same_size",
    "check_split",
    "drop_missing",
]
