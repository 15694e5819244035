"""k-fold cross-validation over a dataset's items: the folds dealt once, from the config.

With ``data.cv_folds = k`` the items of all the dataset's splits are pooled, grouped (the slices of
one volume form one group, so a volume never sits in two folds), shuffled with ``data.cv_seed`` and
dealt into k folds. Fold ``data.cv_fold`` is the test split; from the other folds' groups a seeded
share ``data.cv_val_ratio`` (at least one group) is the validation split and the rest trains.
Every fold's test split is thus a different part of the data, and together they cover it once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segcvae.data.base import SPLITS, Sample, SegmentationDataset


def item_group(dataset: SegmentationDataset, index: int) -> str:
    """The cross-validation group of an item: items of one group stay in one fold.

    A dataset may say (``item_group(index)``, e.g. the folder dataset: the volume a slice comes
    from); otherwise every item is its own group, named by its split and index.
    """
    own = getattr(dataset, "item_group", None)
    return own(index) if own is not None else f"{dataset.split}:{index}"


def fold_groups(
    groups: list[str], folds: int, fold: int, seed: int, val_ratio: float
) -> dict[str, set[str]]:
    """Which groups make the train, val and test splits of one fold.

    Args:
        groups: The distinct groups, in a fixed order (the datasets' order).
        folds: k >= 2.
        fold: The test fold, 0 .. k - 1.
        seed: Seed of the shuffle that deals the groups into folds (the same for every fold).
        val_ratio: Share of the remaining groups that validate (at least one).

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``, disjoint sets covering ``groups``.
    """
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} items (groups) cannot be dealt into {folds} folds")
    order = np.random.default_rng(seed).permutation(len(groups))
    test = {groups[j] for pos, j in enumerate(order) if pos % folds == fold}
    rest = [groups[j] for j in order if groups[j] not in test]
    rest = [rest[j] for j in np.random.default_rng([seed, fold]).permutation(len(rest))]
    n_val = min(len(rest) - 1, max(1, math.ceil(val_ratio * len(rest))))
    return {"train": set(rest[n_val:]), "val": set(rest[:n_val]), "test": test}


class FoldDataset(SegmentationDataset):
    """One split of one fold: items of the dataset's own splits, read by their datasets.

    Args:
        split: "train", "val" or "test" of the fold.
        parts: ``(dataset, index)`` of every item, the datasets built without a transform.
        transform: As for any dataset.
        on_bad_sample: As for any dataset.
        ignore_index: As for any dataset.
    """

    def __init__(
        self,
        split: str,
        parts: list[tuple[SegmentationDataset, int]],
        transform: Any = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        if not parts:
            raise ValueError(f"the {split} split of this fold holds no item")
        source = parts[0][0]
        self.parts = parts
        self.class_names = list(source.class_names)
        self.palette = list(source.palette)
        self.masks_are_modes = bool(getattr(source, "masks_are_modes", False))

    def __len__(self) -> int:
        return len(self.parts)

    def load(self, index: int) -> Sample:
        dataset, i = self.parts[index]
        return dataset.load(i)


def fold_dataset(
    build: Any,
    split: str,
    folds: int,
    fold: int,
    seed: int,
    val_ratio: float,
    transform: Any = None,
    on_bad_sample: str = "error",
    ignore_index: int = 255,
) -> FoldDataset:
    """The ``split`` of fold ``fold`` of a dataset.

    Args:
        build: ``build(split) -> SegmentationDataset`` without a transform (the dataset's own
            splits, pooled).
        split: "train", "val" or "test".
        folds, fold, seed, val_ratio: ``data.cv_*``.
        transform, on_bad_sample, ignore_index: Of the returned dataset.
    """
    sources = [build(s) for s in SPLITS]
    items = [(d, i) for d in sources for i in range(len(d))]
    keys = [item_group(d, i) for d, i in items]
    groups = list(dict.fromkeys(keys))
    chosen = fold_groups(groups, folds, fold, seed, val_ratio)[split]
    parts = [item for item, key in zip(items, keys, strict=True) if key in chosen]
    return FoldDataset(split, parts, transform, on_bad_sample, ignore_index)
