"""Datasets and transforms: ``build_dataset(cfg.data, split, transform)`` and ``build_transforms``.

Each dataset is one module with its own settings dataclass (``ShapesSettings`` in
``shapes.py``, read from ``data.shapes``) and a ``from_config``; :mod:`segcvae.data.registry`
names them (``data.name``).

Every dataset returns ``{"image", "mask", "masks", "id"}`` items (``masks``: all R >= 1 rater or
plausible masks; ``mask``: the reference mask) and has
``num_classes``, ``class_names`` and ``palette``. See :class:`SegmentationDataset` for the item
types with and without a transform, and for how bad samples are handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import Sample, SegmentationDataset
from segcvae.data.cub import CUBDataset, CUBSettings
from segcvae.data.files import DataError, colours_to_index, read_image, read_mask
from segcvae.data.folder import FolderDataset, FolderSettings, check_split_files
from segcvae.data.folds import FoldDataset, fold_dataset
from segcvae.data.lesions import LesionsDataset, LesionsSettings
from segcvae.data.lfw import LFWPartsDataset, LFWSettings
from segcvae.data.qubiq import QUBIQDataset
from segcvae.data.raters import majority_vote
from segcvae.data.registry import dataset_names, get_dataset, register_dataset
from segcvae.data.shapes import ShapesDataset, ShapesSettings
from segcvae.data.transforms import BlockOmission, build_transforms

Transform = Callable[..., dict[str, Any]]

#: The datasets by ``data.name`` (segcvae.data.registry): name -> class.
DATASETS: dict[str, type[SegmentationDataset]] = {
    name: get_dataset(name) for name in dataset_names()
}


def build_dataset(
    cfg: DataConfig, split: str, transform: Transform | None = None
) -> SegmentationDataset:
    """Build the dataset named by ``cfg.name`` for one split.

    Args:
        cfg: the ``data`` section of the config.
        split: "train", "val" or "test".
        transform: e.g. ``build_transforms(cfg, split)``; None returns raw numpy items.

    Returns:
        A torch Dataset of ``{"image", "mask", "masks", "id"}`` dicts.

    Raises:
        ConfigError: unknown dataset name (the message lists the valid names) or invalid option.
        DataError: missing or malformed files (the message names them).
    """
    names = dataset_names()
    if cfg.name not in names:
        raise ConfigError(f"data.name: expected one of {', '.join(names)}, got {cfg.name!r}")
    dataset = get_dataset(cfg.name)
    if cfg.cv_folds:  # k-fold cross-validation: the split is a part of the pooled items
        return fold_dataset(
            lambda s: dataset.from_config(cfg, s, None),
            split,
            cfg.cv_folds,
            cfg.cv_fold,
            cfg.cv_seed,
            cfg.cv_val_ratio,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
        )
    return dataset.from_config(cfg, split, transform)


__all__ = [
    "DATASETS",
    "BlockOmission",
    "CUBDataset",
    "CUBSettings",
    "DataError",
    "FoldDataset",
    "FolderDataset",
    "FolderSettings",
    "LFWPartsDataset",
    "LFWSettings",
    "LesionsDataset",
    "LesionsSettings",
    "QUBIQDataset",
    "Sample",
    "SegmentationDataset",
    "ShapesDataset",
    "ShapesSettings",
    "build_dataset",
    "dataset_names",
    "get_dataset",
    "register_dataset",
    "build_transforms",
    "check_split_files",
    "colours_to_index",
    "majority_vote",
    "read_image",
    "read_mask",
]
