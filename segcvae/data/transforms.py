"""Albumentations pipelines, and the paper's random block omission.

Pipeline order: Resize -> (train) HorizontalFlip -> BlockOmission -> Normalize -> ToTensorV2, so
the omitted block is zeros in raw pixel space (before normalisation) and image and masks always
move together.

Seeded omission (the paper's partial-observation evaluation): ``BlockOmission(fixed_seed=s)``
draws its block from a generator seeded by ``s`` and a checksum of the image it receives. The
block is thus a pure function of (seed, image): the same item gets the same block whatever the
batch size, worker count, order or dataset object, and needs no cooperation from the dataset.
"""

from __future__ import annotations

import zlib
from typing import Any

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from segcvae.config import DataConfig
from segcvae.data.base import check_split


class BlockOmission(A.CoarseDropout):
    """Zero one random block of the image; masks are untouched (image-only noise).

    The block side is drawn uniformly from [0, ``max_fraction``] of the image side (the paper:
    up to 40%) and placed uniformly inside the image. Sampling is our own (one block, optionally
    square, optionally seeded by the image); filling reuses albumentations' ``CoarseDropout``.

    Args:
        max_fraction: largest block side as a fraction of the image side, in [0, 1].
        square: one fraction for both sides (a square on square images); False draws height and
            width independently (a rectangle).
        fixed_seed: None = random blocks from the transform's random state (training);
            an int = the block depends only on (fixed_seed, image content) (seeded evaluation).
        p: probability of applying the transform.
    """

    def __init__(
        self,
        max_fraction: float = 0.4,
        square: bool = True,
        fixed_seed: int | None = None,
        p: float = 1.0,
    ) -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_fraction={max_fraction}; expected 0..1")
        super().__init__(
            num_holes_range=(1, 1),
            hole_height_range=(0.0, max_fraction),
            hole_width_range=(0.0, max_fraction),
            fill=0,
            fill_mask=None,  # None: masks pass through unchanged
            p=p,
        )
        self.max_fraction = max_fraction
        self.square = square
        self.fixed_seed = fixed_seed

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        if self.fixed_seed is None:
            rng = self.random_generator
        else:
            image = np.ascontiguousarray(data["image"])
            rng = np.random.default_rng([self.fixed_seed, zlib.crc32(image), height, width])
        fy = rng.uniform(0.0, self.max_fraction)
        fx = fy if self.square else rng.uniform(0.0, self.max_fraction)
        block_h, block_w = int(fy * height), int(fx * width)  # floor: never above max_fraction
        y0 = int(rng.integers(0, height - block_h + 1))
        x0 = int(rng.integers(0, width - block_w + 1))
        holes = np.array([[x0, y0, x0 + block_w, y0 + block_h]], dtype=np.int64)
        return {"holes": holes, "seed": 0}  # "seed": fill randomness, unused with fill=0

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_fraction", "square", "fixed_seed")


def build_transforms(
    cfg: DataConfig,
    split: str,
    omission: bool = False,
    omission_seed: int = 0,
) -> A.Compose:
    """The albumentations pipeline for a split.

    Train: resize, random horizontal flip (``cfg.hflip``), random block omission (probability
    ``cfg.omission_p``, side up to ``cfg.omission_max``; off when either is 0), normalise, to
    tensor. Val / test: resize, normalise, to tensor. ``omission=True`` adds (or, in training,
    replaces the random one with) a seeded block on every image, repeatable per image.

    Args:
        cfg: a ``DataConfig`` (reads image_size, hflip, omission_max, omission_p, mean, std).
        split: "train", "val" or "test".
        omission: seeded block omission on every image (partial-observation evaluation).
        omission_seed: seed of the seeded omission.

    Returns:
        A Compose to call as ``t(image=..., mask=..., masks=...)``; outputs an image float32
        tensor (3, H, W) and masks as tensors of the input dtype.
    """
    check_split(split)
    size = cfg.image_size
    ops: list[Any] = [
        A.Resize(size, size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
    ]
    if split == "train" and cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if omission:
        ops.append(BlockOmission(cfg.omission_max, fixed_seed=omission_seed, p=1.0))
    elif split == "train" and cfg.omission_max > 0 and cfg.omission_p > 0:
        ops.append(BlockOmission(cfg.omission_max, p=cfg.omission_p))
    ops += [
        A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose(ops)


__all__ = ["BlockOmission", "build_transforms"]
