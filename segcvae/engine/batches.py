"""Data loading for the trainer: an order that survives a resume, and augmentations seeded per item.

Exact resume needs the batches after step ``t`` to be the same whether or not the run was stopped
at ``t``. Two things make that so:

* :class:`ResumableSampler` is a ``DistributedSampler`` (epoch-seeded shuffling, one shard per
  rank) that can start part-way into an epoch, so a resumed run skips the batches already consumed
  without loading them.
* :class:`SeededAugmentation` reseeds the dataset's albumentations pipeline from
  ``(seed, epoch, index)`` before each item, so an item's augmentation does not depend on which
  worker loads it or on what was drawn before.

Multi-rater items: :func:`collate` pads ``masks`` to the batch's largest number of raters;
:mod:`segcvae.engine.targets` picks each step's targets from them, so the rater choice survives a
resume as well.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from segcvae.config import ConfigError, DataConfig
from segcvae.data import DataError, build_dataset

log = logging.getLogger("segcvae")


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` whose epoch can start at a given batch.

    Args:
        dataset: The dataset to shard.
        num_replicas: World size.
        rank: This process's rank.
        shuffle: Shuffle with ``seed + epoch`` (as ``DistributedSampler``).
        seed: Shuffling seed.
        drop_last: Drop the tail so every rank sees the same number of items.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start`` items (of this rank)."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class ItemSeededTransform:
    """An albumentations pipeline whose random state is set from outside before each item.

    Pass it to ``build_dataset`` instead of the ``Compose`` itself. It has no ``set_random_seed``,
    so the dataset leaves its seeding to :class:`SeededAugmentation`.

    Args:
        transform: An albumentations ``Compose``.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def reseed(self, key: list[int]) -> None:
        """Set the pipeline's numpy and python generators from the integers in ``key``."""
        seq = np.random.SeedSequence(key)
        py_seed = int(seq.generate_state(1)[0])
        self.transform.set_random_state(np.random.default_rng(seq), random.Random(py_seed))

    def __call__(self, **data: Any) -> dict[str, Any]:
        return self.transform(**data)


class SeededAugmentation(Dataset):
    """Wrap a dataset built with an :class:`ItemSeededTransform`; seed it per item.

    The random state used for item ``i`` in epoch ``e`` is a function of ``(seed, e, i)`` only.
    Call :meth:`set_epoch` before creating each epoch's iterator (workers copy the wrapper then;
    do not use ``persistent_workers``).

    Args:
        dataset: A dataset from ``build_dataset(cfg, split, transform)``.
        transform: The ``transform`` that dataset was built with.
        seed: Base seed (``train.seed``).
    """

    def __init__(self, dataset: Dataset, transform: ItemSeededTransform, seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        self.transform.reseed([self.seed, self.epoch, int(index)])
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        # num_classes, class_names, palette, ... come from the wrapped dataset.
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def open_dataset(cfg: DataConfig, split: str, transform: Any = None) -> Any:
    """``build_dataset``, with a pointer to ``datasets/<name>/README.md`` when files are missing.

    Raises:
        DataError: The data module's message (naming the path), plus where to read about the
            expected layout.
    """
    try:
        return build_dataset(cfg, split, transform)
    except DataError as e:
        message = str(e)
        if "README" not in message and cfg.name != "shapes":
            message += (
                f" (see datasets/{cfg.name}/README.md for where to get the {cfg.name} data and "
                "the layout expected under data.root)"
            )
            raise DataError(message) from e
        raise


def collate(items: list[dict[str, Any]], ignore_index: int = 255) -> dict[str, Any]:
    """Stack tensors, keep ids as a list of strings; pad ``masks`` to the batch's largest R.

    Items may have different numbers of rater masks: ``masks`` (R_i, H, W) are padded with
    ``ignore_index`` to (B, max R_i, H, W), and ``num_masks`` (B,) long says how many are real.
    ``mask_probs`` (R_i,), where the items give them, are padded with 0 to (B, max R_i) float32
    (an item without them in such a batch gets equally likely masks).

    Args:
        items: Dataset items.
        ignore_index: Fill value of the padded masks (every metric and loss skips it).

    Raises:
        DataError: an item's ``mask_probs`` do not have one value per mask.
    """
    batch: dict[str, Any] = {}
    if any("mask_probs" in it for it in items):
        batch["mask_probs"] = _collate_probs(items)
    for key in items[0]:
        if key == "mask_probs":
            continue
        values = [it[key] for it in items]
        if key == "masks":
            tensors = [torch.as_tensor(v) for v in values]
            counts = [t.shape[0] for t in tensors]
            r = max(counts)
            padded = tensors[0].new_full((len(tensors), r, *tensors[0].shape[1:]), ignore_index)
            for i, t in enumerate(tensors):
                padded[i, : t.shape[0]] = t
            batch[key] = padded
            batch["num_masks"] = torch.tensor(counts, dtype=torch.long)
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = values
    return batch


def _collate_probs(items: list[dict[str, Any]]) -> torch.Tensor:
    """The items' ``mask_probs`` as (B, max R) float32, padded with 0 (see :func:`collate`)."""
    probs = []
    for i, it in enumerate(items):
        r = len(it["masks"]) if "masks" in it else 1
        p = it.get("mask_probs")
        p = torch.full((r,), 1.0 / r) if p is None else torch.as_tensor(p, dtype=torch.float32)
        if p.shape != (r,):
            raise DataError(
                f"item {it.get('id', i)}: mask_probs has shape {tuple(p.shape)}; expected ({r},), "
                "one probability per mask"
            )
        probs.append(p.float())
    out = torch.zeros(len(probs), max(len(p) for p in probs))
    for i, p in enumerate(probs):
        out[i, : len(p)] = p
    return out


def _collate_for(dataset: Any) -> Any:
    """:func:`collate` padding with the dataset's ignore index (looked up through wrappers)."""
    ignore_index = 255
    while dataset is not None:
        attrs = getattr(dataset, "__dict__", {})
        if isinstance(attrs.get("ignore_index"), int):
            ignore_index = attrs["ignore_index"]
            break
        dataset = attrs.get("dataset")  # inside a Subset or SeededAugmentation
    return functools.partial(collate, ignore_index=ignore_index)


def share_skips(dataset: Dataset, num_workers: int) -> None:
    """Let the DataLoader workers of ``dataset`` share its record of skipped (bad) items.

    Without it each worker, in each epoch, would find and count the bad items again.
    """
    share = getattr(dataset, "share_skips", None)
    if num_workers > 0 and callable(share):
        share()


def train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> tuple[DataLoader, ResumableSampler]:
    """A training ``DataLoader`` over a :class:`ResumableSampler` (per-rank ``batch_size``).

    The loader gets its own generator, so creating an iterator never draws from the global torch
    RNG (which would make a resumed run diverge).
    """
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    if len(sampler) < batch_size:
        raise ConfigError(
            f"the training split has {len(dataset)} items ({len(sampler)} per process), "  # type: ignore[arg-type]
            f"fewer than one batch of {batch_size}: lower train.batch_size"
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    share_skips(dataset, num_workers)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=_collate_for(dataset),
        drop_last=True,
        pin_memory=pin_memory,
        generator=generator,
    )
    return loader, sampler


def eval_loader(
    dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False
) -> DataLoader:
    """A sequential evaluation ``DataLoader``."""
    share_skips(dataset, num_workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_for(dataset),
        drop_last=False,
        pin_memory=pin_memory,
    )
