"""Each training step's targets from a batch of multi-rater items (``train.rater``).

:func:`training_pairs` picks the (images, targets) a step learns from: one rater per item drawn
from ``(seed, step, item id)`` (:func:`select_targets`), so the rater choice survives a resume, or
every rater (:func:`expand_raters`). Items that give their masks' probabilities (``mask_probs``)
are drawn with those probabilities, and a model that scores every mask of an item in one pass
weights them by :func:`target_weights`.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from segcvae.config import ConfigError
from segcvae.data import DataError


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
