"""Datasets and transforms: ``build_dataset(cfg.data, split, transform)`` and ``build_transforms``.

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
from segcvae.data.cub import CUBDataset
from segcvae.data.files import DataError, colours_to_index, read_image, read_mask
from segcvae.data.folder import FolderDataset, check_split_files
from segcvae.data.folds import FoldDataset, fold_dataset
from segcvae.data.lesions import LesionsDataset
from segcvae.data.lfw import LFWPartsDataset, class_flips
from segcvae.data.qubiq import QUBIQDataset
from segcvae.data.raters import majority_vote
from segcvae.data.shapes import ShapesDataset
from segcvae.data.transforms import BlockOmission, build_transforms

Transform = Callable[..., dict[str, Any]]


def _lfw(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    try:
        class_flips(cfg.lfw_flips)
    except ValueError as e:  # a DataConfig built without from_dict's validation
        raise ConfigError(f"data.lfw_flips: {e}") from e
    return LFWPartsDataset(
        root=_root(cfg),
        split=split,
        masks_dir=cfg.lfw_masks or None,
        colour_tolerance=cfg.colour_tolerance,
        transform=transform,
        on_bad_sample=cfg.on_bad_sample,
        ignore_index=cfg.ignore_index,
        flips=cfg.lfw_flips,
    )


def _cub(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    return CUBDataset(
        root=_root(cfg),
        split=split,
        classes=cfg.cub_classes,
        segmentations_dir=cfg.cub_segmentations or None,
        mask_threshold=cfg.cub_mask_threshold,
        crop=cfg.cub_crop,
        crop_margin=cfg.cub_crop_margin,
        val_ratio=cfg.cub_val_ratio,
        split_seed=cfg.split_seed,
        transform=transform,
        on_bad_sample=cfg.on_bad_sample,
        ignore_index=cfg.ignore_index,
    )


def _folder(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    return FolderDataset(
        root=_root(cfg),
        split=split,
        images=cfg.folder_images,
        masks=cfg.folder_masks,
        palette=cfg.folder_palette,
        class_names=cfg.folder_classes,
        splits_dir=cfg.folder_splits or None,
        val_ratio=cfg.folder_val_ratio,
        test_ratio=cfg.folder_test_ratio,
        split_seed=cfg.split_seed,
        colour_tolerance=cfg.colour_tolerance,
        transform=transform,
        on_bad_sample=cfg.on_bad_sample,
        ignore_index=cfg.ignore_index,
        layout=cfg.folder_layout,
        image_pattern=cfg.folder_image_pattern,
        mask_pattern=cfg.folder_mask_pattern,
        binary_threshold=cfg.binary_threshold,
        split_dirs=cfg.folder_split_dirs,
        mask_resize=cfg.mask_resize,
        nifti_axis=cfg.nifti_axis,
        nifti_slices=cfg.nifti_slices,
        nifti_intensity=cfg.nifti_intensity,
    )


def _qubiq(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    return QUBIQDataset(
        root=_root(cfg),
        split=split,
        transform=transform,
        on_bad_sample=cfg.on_bad_sample,
        ignore_index=cfg.ignore_index,
    )


def _shapes(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    sizes = {
        "train": cfg.shapes_train_size,
        "val": cfg.shapes_val_size,
        "test": cfg.shapes_test_size,
    }
    return ShapesDataset(
        split=split,
        size=sizes.get(split, 0),
        image_size=cfg.image_size,
        num_shapes=cfg.shapes_classes,
        completions=cfg.shapes_completions,
        difficulty=cfg.shapes_difficulty,
        seed=cfg.shapes_seed,
        transform=transform,
        ignore_index=cfg.ignore_index,
        ambiguity=cfg.shapes_ambiguity,
    )


def _lesions(cfg: DataConfig, split: str, transform: Transform | None) -> SegmentationDataset:
    sizes = {
        "train": cfg.lesions_train_size,
        "val": cfg.lesions_val_size,
        "test": cfg.lesions_test_size,
    }
    return LesionsDataset(
        split=split,
        size=sizes.get(split, 0),
        image_size=cfg.image_size,
        raters=cfg.lesions_raters,
        seed=cfg.lesions_seed,
        transform=transform,
        ignore_index=cfg.ignore_index,
    )


DATASETS: dict[str, Callable[[DataConfig, str, Transform | None], SegmentationDataset]] = {
    "lfw": _lfw,
    "cub": _cub,
    "folder": _folder,
    "shapes": _shapes,
    "qubiq": _qubiq,
    "lesions": _lesions,
}


def _root(cfg: DataConfig) -> str:
    if not cfg.root:
        raise DataError(f"data.root is empty; the {cfg.name} dataset needs its folder")
    return cfg.root


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
    if cfg.name not in DATASETS:
        raise ConfigError(f"data.name: expected one of {', '.join(DATASETS)}, got {cfg.name!r}")
    if cfg.cv_folds:  # k-fold cross-validation: the split is a part of the pooled items
        return fold_dataset(
            lambda s: DATASETS[cfg.name](cfg, s, None),
            split,
            cfg.cv_folds,
            cfg.cv_fold,
            cfg.cv_seed,
            cfg.cv_val_ratio,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
        )
    return DATASETS[cfg.name](cfg, split, transform)


__all__ = [
    "DATASETS",
    "BlockOmission",
    "CUBDataset",
    "DataError",
    "FoldDataset",
    "FolderDataset",
    "LFWPartsDataset",
    "LesionsDataset",
    "QUBIQDataset",
    "Sample",
    "SegmentationDataset",
    "ShapesDataset",
    "build_dataset",
    "build_transforms",
    "check_split_files",
    "colours_to_index",
    "majority_vote",
    "read_image",
    "read_mask",
]
