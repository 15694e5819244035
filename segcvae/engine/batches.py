"""Data loading for the trainer: an order that survives a resume, and augmentations seeded per item.

Exact resume needs the batches after step ``t`` to be the same whether or not the run was stopped
at ``t``. Two things make that so:

* :class:`ResumableSampler` is a ``DistributedSampler`` (epoch-seeded shuffling, one shard per
  rank) that can start part-way into an epoch, so a resumed run skips the batches already consumed
  without loading them.
* :class:`SeededAugmentation` reseeds the dataset's albumentations pipeline from
  ``(seed, epoch, index)`` before each item, so an item's augmentation does not depend on which
  worker loads it or on what was drawn before.

Multi-rater items: :func:`collate` pads ``masks`` to the batch's largest number of raters, and
:func:`training_pairs` picks each step's targets, one rater per item drawn from
``(seed, step, item id)`` (:func:`select_targets`), or every rater (:func:`expand_raters`), so
the rater choice survives a resume as well. Items that give their masks' probabilities
(``mask_probs``) are drawn with those probabilities, and a model that scores every mask of an
item in one pass weights them by :func:`target_weights`.
"""

from __future__ import annotations

import functools
import logging
import random
import zlib
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


def item_key(item_id: str) -> int:
    """A stable integer for an item id (the same in every process and run)."""
    return zlib.crc32(str(item_id).encode())


def select_targets(
    masks: torch.Tensor,
    num_masks: torch.Tensor,
    seed: int,
    step: int,
    keys: list[int],
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """One rater mask per item, drawn from (seed, step, item key) only.

    The draw for an item does not depend on the batch it is in, the worker that loaded it, or
    any RNG state, so a resumed run draws exactly what an uninterrupted one would.

    Args:
        masks: (B, R, H, W) padded rater masks.
        num_masks: (B,) number of real masks per item (>= 1).
        seed: ``train.seed``.
        step: The training step (0-based).
        keys: One integer per item (:func:`item_key` of its id).
        probs: (B, R) the masks' probabilities (``mask_probs``): mask j of an item is drawn
            with probability ``probs[b, j]`` (normalised over its real masks; 0 = never). None =
            uniformly among the real masks.

    Returns:
        (B, H, W) targets.

    Raises:
        DataError: an item's probabilities are negative, not finite or all 0.
    """
    if probs is None:
        picks = [
            int(np.random.default_rng([seed, step, key]).integers(int(n)))
            for key, n in zip(keys, num_masks.tolist(), strict=True)
        ]
    else:
        p_rows = probs.detach().double().cpu().numpy()
        picks = []
        for key, n, p in zip(keys, num_masks.tolist(), p_rows, strict=True):
            p = p[: int(n)]
            if not (np.isfinite(p).all() and (p >= 0).all() and p.sum() > 0):
                raise DataError(
                    f"mask_probs of an item (key {key}) are {p.tolist()}; expected finite "
                    "probabilities >= 0, not all 0"
                )
            picks.append(
                int(np.random.default_rng([seed, step, key]).choice(int(n), p=p / p.sum()))
            )
    return masks[torch.arange(masks.shape[0]), torch.tensor(picks, dtype=torch.long)]


def expand_raters(
    x: torch.Tensor, masks: torch.Tensor, num_masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, rater) pair: each image repeated once per real rater mask.

    Args:
        x: (B, 3, H, W) images.
        masks: (B, R, H, W) padded rater masks.
        num_masks: (B,) real masks per item.

    Returns:
        Images (N, 3, H, W) and targets (N, H, W), N = ``num_masks.sum()``, item-major order.
    """
    r = masks.shape[1]
    real = torch.arange(r).unsqueeze(0) < num_masks.unsqueeze(1)  # (B, R)
    item = torch.arange(x.shape[0]).unsqueeze(1).expand(-1, r)[real]  # (N,)
    return x[item], masks[real]


def _resolve_rater(rater: str, target_sets: bool) -> str:
    """``train.rater`` with "auto" resolved: "all" for a model that scores sets, else "random"."""
    if rater == "auto":
        return "all" if target_sets else "random"
    if rater not in ("random", "all"):
        raise ValueError(f"train.rater={rater!r}; expected auto, random or all")
    return rater


def target_weights(
    batch: dict[str, Any], rater: str, target_sets: bool = False
) -> torch.Tensor | None:
    """The masks' weights for a model that scores every mask of an item in one pass.

    Args:
        batch: A collated batch (as for :func:`training_pairs`).
        rater: ``train.rater``.
        target_sets: As for :func:`training_pairs`.

    Returns:
        ``mask_probs`` (B, R) (0 on padding) when :func:`training_pairs` returns target sets
        and the batch gives the masks' probabilities: the objective then weights each (image,
        mask) term by them instead of averaging (``objective(out, y, step, mask_probs=...)``).
        None otherwise (one target per image, or equally likely masks).
    """
    if "masks" not in batch or "mask_probs" not in batch:
        return None
    if _resolve_rater(rater, target_sets) == "all" and target_sets:
        return batch["mask_probs"]
    return None


def training_pairs(
    batch: dict[str, Any], rater: str, seed: int, step: int, target_sets: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, targets) a training step learns from (``train.rater``).

    Args:
        batch: A collated batch with ``image``, ``mask`` and, optionally, ``masks`` /
            ``num_masks`` / ``id`` / ``mask_probs``.
        rater: "random": one rater per item, :func:`select_targets` (with the items'
            ``mask_probs`` where the batch has them); "all": every rater,
            :func:`expand_raters` (the batch grows to the number of masks), or, with
            ``target_sets``, the padded masks as they are (weight them by
            :func:`target_weights`); "auto": "all" with ``target_sets``, else "random".
            Without ``masks`` the batch gives ``(image, mask)`` whatever the choice.
        seed: ``train.seed``.
        step: The training step.
        target_sets: The model scores a set of masks per image in one pass (a categorical
            latent: its codes are decoded once, whatever the target), so "all" returns targets
            (B, R, H, W), padded with the ignore index, instead of repeating the images.

    Returns:
        Images (N, 3, H, W) and targets (N, H, W); (B, 3, H, W) and (B, R, H, W) for "all" with
        ``target_sets``.

    Raises:
        ConfigError: "all" for a model that scores one mask per image when the batch gives the
            masks' probabilities (repeating each mask would weigh them equally).
    """
    x = batch["image"]
    if "masks" not in batch:
        return x, batch["mask"]
    masks = batch["masks"]
    num_masks = batch.get("num_masks")
    if num_masks is None:
        num_masks = torch.full((masks.shape[0],), masks.shape[1], dtype=torch.long)
    rater = _resolve_rater(rater, target_sets)
    probs = batch.get("mask_probs")
    if rater == "all" and target_sets:
        return x, masks  # (B, R, H, W), padded with the ignore index
    if rater == "all":
        if probs is not None:
            raise ConfigError(
                "train.rater=all: the data gives its masks' probabilities (mask_probs) and this "
                "model scores one mask per image, so repeating every mask would weigh them "
                "equally; expected train.rater=random or auto (draws each item's mask with its "
                "probability)"
            )
        return expand_raters(x, masks, num_masks)
    ids = batch.get("id") or [str(i) for i in range(masks.shape[0])]
    return x, select_targets(masks, num_masks, seed, step, [item_key(i) for i in ids], probs)


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
