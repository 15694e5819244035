"""Checks of a run's data when training starts, before the first step: the split files it will
read, and labels that cannot be learnt (e.g. 0/255 binary masks read with ``ignore_index=255``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from segcvae.config import DataConfig
from segcvae.data import DataError, check_split_files

log = logging.getLogger("segcvae")

# Items whose masks check_labels reads at most (evenly spaced over the split): seconds at worst.
LABEL_SCAN_ITEMS = 200
# The data.* key that reads 0/255 (or 0/1..255) binary masks as classes 0 and 1.
BINARY_THRESHOLD_KEY = "data.folder.binary_threshold"


def check_splits(cfg: DataConfig, eval_split: str = "val") -> list[str]:
    """Check the split files or folders a training run reads, when it starts (on rank 0).

    :func:`segcvae.data.check_split_files`, with its warnings logged: a missing train or
    ``eval_split`` file or folder is a :class:`DataError` naming it; a missing one of another
    split (test) is a warning now rather than an error after training.

    Returns:
        The warnings logged.
    """
    warnings = check_split_files(cfg, eval_split)
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


@dataclass
class LabelCounts:
    """Pixel counts of the masks read by :func:`scan_labels`.

    Attributes:
        per_class: Pixels of each class, index order (K,).
        ignored: Pixels equal to ``ignore_index``.
        items: Items read.
        total_items: Items in the split.
        masks: Masks read (every rater mask of each item read; ``items`` for one-mask data).
    """

    per_class: np.ndarray
    ignored: int
    items: int
    total_items: int
    masks: int

    @property
    def pixels(self) -> int:
        return int(self.per_class.sum()) + self.ignored


def scan_labels(dataset: Any, num_classes: int, ignore_index: int, max_items: int) -> LabelCounts:
    """Count the label values of the raw masks of up to ``max_items`` items (evenly spaced).

    Reads ``dataset.load(i)`` (no transform) and counts every mask of an item (all its raters'
    ``masks``; ``mask`` when it has no others). A bad item is skipped when the dataset skips bad
    items and raises otherwise, as training would.
    """
    n = len(dataset)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_items)).round().astype(int)) if n else []
    counts = np.zeros(num_classes, dtype=np.int64)
    ignored = read = masks_read = 0
    for i in idx:
        try:
            sample = dataset.load(int(i))
        except DataError:
            if getattr(dataset, "on_bad_sample", "error") == "error":
                raise
            continue
        masks = np.asarray(sample.masks if sample.masks is not None else sample.mask[None])
        values = np.bincount(masks.ravel().astype(np.int64), minlength=max(256, num_classes))
        ignored += int(values[ignore_index])
        values[ignore_index] = 0  # an ignore_index below K hides that class
        counts += values[:num_classes]
        read += 1
        masks_read += len(masks)
    return LabelCounts(counts, ignored, read, n, masks_read)


def check_labels(
    dataset: Any, cfg: DataConfig, max_items: int = LABEL_SCAN_ITEMS
) -> LabelCounts | None:
    """Look at the training masks once, before training, for labels that cannot be learnt.

    Raises a :class:`DataError` when a configured class never occurs while masks hold the ignore
    value (the signature of 0/255 binary masks read with ``ignore_index=255``: every foreground
    pixel would be ignored, and the metrics of a model predicting background everywhere would look
    perfect). Warns when a class never occurs, or when most pixels are ignored.

    Args:
        dataset: A dataset with ``load(index)`` (see ``SegmentationDataset``); others are not checked.
        cfg: The data config (``ignore_index``, named keys).
        max_items: Items read at most (with all of their masks).

    Returns:
        The counts, or None for a dataset without ``load``.
    """
    if not hasattr(dataset, "load") or not hasattr(dataset, "class_names"):
        return None
    names = list(dataset.class_names)
    counts = scan_labels(dataset, len(names), cfg.ignore_index, max_items)
    if counts.items == 0 or counts.pixels == 0:
        return counts
    where = f"data.name={cfg.name}" + (f", data.root={cfg.root}" if cfg.root else "")
    one_each = counts.masks == counts.items  # one mask per item: items and masks are the same
    if counts.items == counts.total_items:
        read = (
            f"the {counts.items} training masks read"
            if one_each
            else f"the {counts.masks} masks of the {counts.items} training items read"
        )
    else:
        part = f"{counts.items} of the {counts.total_items} training"
        read = (f"{part} masks" if one_each else f"the {counts.masks} masks of {part} items") + (
            f" (evenly spaced; the check reads at most {max_items} items)"
        )
    share = counts.per_class / counts.pixels
    ignored = counts.ignored / counts.pixels
    log.info(
        "labels in %s: %s%s",
        read,
        ", ".join(f"{n} {v:.1%}" for n, v in zip(names, share, strict=True)),
        f", ignored ({cfg.ignore_index}) {ignored:.1%}" if counts.ignored else "",
    )
    absent = [f"{k} ({names[k]})" for k in range(len(names)) if counts.per_class[k] == 0]
    if absent and counts.ignored:
        raise DataError(
            f"{where}: class {', '.join(absent)} never occurs in {read}, while {ignored:.1%} of "
            f"their pixels are {cfg.ignore_index} = data.ignore_index (left out of the loss and "
            "the metrics): these look like binary 0/255 masks, whose foreground would be ignored "
            f"and a background-only model would score perfectly. Set {BINARY_THRESHOLD_KEY}=128 "
            "to read mask values >= 128 as class 1, or set data.ignore_index to a value the masks "
            "do not use"
        )
    if absent:
        log.warning(
            "%s: class %s never occurs in %s: the model cannot learn it; its IoU will be 0 if the "
            "model predicts it anywhere (every such pixel is a false positive, counted in "
            "mean_iou) and null (left out of mean_iou) if it never does; check the masks and the "
            "class list (data.folder.classes / data.folder.palette)",
            where,
            ", ".join(absent),
            read,
        )
    if ignored > 0.5:
        log.warning(
            "%s: %.1f%% of the pixels in %s are %d = data.ignore_index and are left out of the "
            "loss and the metrics; if that value is a class, set data.ignore_index to another "
            "value (or %s=128 for 0/255 binary masks)",
            where,
            100 * ignored,
            read,
            cfg.ignore_index,
            BINARY_THRESHOLD_KEY,
        )
    return counts
