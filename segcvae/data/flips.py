"""Class flips with known probabilities: real masks made jointly ambiguous (Kohl et al. 2018).

The Probabilistic U-Net paper relabels five Cityscapes classes to new classes with fixed
probabilities, independently per class, so every image has a known set of plausible masks: with F
flipped classes, the 2**F combinations of flipped / kept, each with the product of its classes'
probabilities. All pixels of a class flip together.

Mode order: mode ``m`` flips the i-th listed class where bit ``F - 1 - i`` of ``m`` is set (the
first listed class is the most significant bit): mode 0 is the mask as labelled, mode ``2**F - 1``
flips every listed class.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassFlip:
    """One flipped class: every pixel of ``source`` becomes ``target`` with ``probability``."""

    source: int
    target: int
    probability: float


def check_flip_probability(probability: float) -> bool:
    """True for a probability strictly between 0 and 1 (a flip that can happen and not happen)."""
    return (
        isinstance(probability, (int, float)) and math.isfinite(probability) and 0 < probability < 1
    )


def flip_mode_probs(flips: Sequence[ClassFlip]) -> np.ndarray:
    """The probability of each of the ``2**F`` modes (the module's mode order).

    Returns:
        (2**F,) float64, summing to 1.
    """
    probs = [
        math.prod(
            f.probability if on else 1.0 - f.probability
            for f, on in zip(flips, chosen, strict=True)
        )
        for chosen in itertools.product((False, True), repeat=len(flips))
    ]
    return np.asarray(probs, np.float64)


def flip_modes(mask: np.ndarray, flips: Sequence[ClassFlip]) -> np.ndarray:
    """Every plausible mask of ``mask`` under the flips (the module's mode order).

    A class absent from ``mask`` gives pairs of identical modes; they are kept, so the number of
    modes is ``2**F`` for every image.

    Args:
        mask: (H, W) class indices.
        flips: the flipped classes; their sources must differ.

    Returns:
        (2**F, H, W) masks of ``mask``'s dtype.
    """
    modes = []
    for chosen in itertools.product((False, True), repeat=len(flips)):
        mode = mask.copy()
        for flip, on in zip(flips, chosen, strict=True):
            if on:
                mode[mask == flip.source] = flip.target
        modes.append(mode)
    return np.stack(modes)


def draw_mode(probs: np.ndarray, seed: Sequence[int]) -> int:
    """One mode index drawn by ``probs``, deterministic in ``seed`` (e.g. ``(split, index)``)."""
    rng = np.random.default_rng(list(seed))
    return int(rng.choice(len(probs), p=probs))


__all__ = ["ClassFlip", "check_flip_probability", "draw_mode", "flip_mode_probs", "flip_modes"]
