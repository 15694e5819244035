"""The data of a training run: the training loader (every rank, its shard, seeded augmentation)
and the validation loader (rank 0), built from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, Subset

from segcvae.config import Config
from segcvae.data import build_transforms
from segcvae.engine.batches import (
    ItemSeededTransform,
    ResumableSampler,
    SeededAugmentation,
    eval_loader,
    open_dataset,
    train_loader,
)
from segcvae.engine.checks import check_labels, check_splits
from segcvae.engine.distributed import DistInfo


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """What a checkpoint needs to know about the training data."""
    return {
        "num_classes": int(dataset.num_classes),
        "class_names": [str(c) for c in dataset.class_names],
        "palette": [[int(v) for v in rgb] for rgb in dataset.palette],
    }


@dataclass
class TrainingData:
    """Attributes:
    train_set: The training split with its seeded augmentation (``set_epoch`` per epoch).
    loader: Its batches (this rank's shard, ``batch_size`` per rank).
    sampler: The loader's sampler (``set_epoch(epoch, start)`` resumes mid-epoch).
    val_loader: The validation split (``eval.split``, at most ``eval.max_images``), rank 0 only.
    meta: :func:`dataset_meta` of the training split.
    """

    train_set: SeededAugmentation
    loader: DataLoader
    sampler: ResumableSampler
    val_loader: DataLoader | None
    meta: dict[str, Any]


def build_training_data(cfg: Config, dist: DistInfo, batch_size: int) -> TrainingData:
    """Open the splits a run needs and check the training labels (rank 0) once.

    Args:
        cfg: The experiment.
        dist: This process's rank and the world size.
        batch_size: Images per step on this rank.
    """
    tc, ev = cfg.train, cfg.eval
    train_tf = ItemSeededTransform(build_transforms(cfg.data, "train"))
    train_set = open_dataset(cfg.data, "train", train_tf)
    if dist.is_main:
        check_labels(train_set, cfg.data)
        check_splits(cfg.data, ev.split)  # every split file the run will need (test: a warning)
    meta = dataset_meta(train_set)
    seeded = SeededAugmentation(train_set, train_tf, tc.seed)
    pin = dist.device.type == "cuda"
    loader, sampler = train_loader(
        seeded,
        batch_size,
        cfg.data.num_workers,
        tc.seed,
        rank=dist.rank,
        world_size=dist.world_size,
        pin_memory=pin,
    )
    val_loader = None
    if dist.is_main:
        val_tf = build_transforms(
            cfg.data, ev.split, omission=ev.omission, omission_seed=ev.omission_seed
        )
        val_set = open_dataset(cfg.data, ev.split, val_tf)
        if ev.max_images > 0 and len(val_set) > ev.max_images:
            val_set = Subset(val_set, range(ev.max_images))  # load no more than is scored
        val_loader = eval_loader(val_set, ev.batch_size, cfg.data.num_workers, pin_memory=pin)
    return TrainingData(seeded, loader, sampler, val_loader, meta)
