"""Albumentations pipelines, and the paper's random block omission.

Pipeline order: Resize -> (train) the ``data.augment`` parts -> BlockOmission -> Normalize ->
ToTensorV2, so the omitted block is zeros in raw pixel space (before normalisation) and image and
masks always move together.

Training augmentation (``data.augment``, a preset or a list of parts; ``data.hflip`` adds
``hflip``), applied in this order, each an albumentations transform given the image, ``mask``
and all rater ``masks`` in one call so that every mask gets the image's geometric transform:

* ``hflip`` / ``vflip``: a horizontal / vertical flip, p = 0.5 each.
* ``affine``: rotation within +-15 degrees, scale 0.9-1.1, shift within +-6 % of the side per
  axis, p = 0.7.
* ``elastic``: a smooth random displacement field (albumentations' ``ElasticTransform`` with
  alpha = 0.75 S, sigma = 0.08 S at side S: about a pixel on average, 3-5 pixels at the most
  displaced 1 % of the pixels), p = 0.5.
* ``intensity``: brightness and contrast within +-15 % (p = 0.7), then gamma 0.8-1.25 (p = 0.5);
  the image only, the same on every channel (a grey scan stays grey).

The image is interpolated bilinearly, the masks by nearest neighbour, so a mask keeps exactly its
labels (the ignore index included). Pixels that ``affine`` or ``elastic`` move in from outside the
image are 0 in the image and ``data.ignore_index`` in every mask: no label is invented there, and
the loss leaves them out. The draws come from the pipeline's random state, which
``segcvae.engine.batches.SeededAugmentation`` sets per (seed, epoch, index) for exact resume.

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

from segcvae.config import AUGMENT_PARTS, DataConfig, augment_parts
from segcvae.data.base import check_split

# The intensity part's ranges (brightness and contrast as fractions; gamma in percent).
BRIGHTNESS_CONTRAST = 0.15
GAMMA_PERCENT = (80, 125)


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


def augmentation(parts: list[str], image_size: int, ignore_index: int = 255) -> list[Any]:
    """The albumentations transforms of the augmentation ``parts`` (see the module docstring).

    Args:
        parts: Part names from :data:`segcvae.config.AUGMENT_PARTS` (e.g. from
            :func:`segcvae.config.augment_parts`); applied in that tuple's order, whatever
            the order of ``parts``.
        image_size: Side S of the (resized) images: scales the elastic field.
        ignore_index: Mask value of the pixels moved in from outside the image.

    Returns:
        A list of transforms to put into a ``Compose``.

    Raises:
        ValueError: An unknown part (the message lists the valid ones).
    """
    unknown = sorted(set(parts) - set(AUGMENT_PARTS))
    if unknown:
        raise ValueError(
            f"unknown augmentation part {unknown[0]!r}; valid parts: {', '.join(AUGMENT_PARTS)}"
        )
    geometric = {
        "interpolation": cv2.INTER_LINEAR,
        "mask_interpolation": cv2.INTER_NEAREST,
        "border_mode": cv2.BORDER_CONSTANT,
        "fill": 0,
        "fill_mask": ignore_index,
    }
    builders = {
        "hflip": lambda: [A.HorizontalFlip(p=0.5)],
        "vflip": lambda: [A.VerticalFlip(p=0.5)],
        "affine": lambda: [
            A.Affine(
                rotate=(-15, 15),
                scale=(0.9, 1.1),
                translate_percent=(-0.06, 0.06),
                p=0.7,
                **geometric,
            )
        ],
        "elastic": lambda: [
            A.ElasticTransform(alpha=0.75 * image_size, sigma=0.08 * image_size, p=0.5, **geometric)
        ],
        "intensity": lambda: [
            A.RandomBrightnessContrast(BRIGHTNESS_CONTRAST, BRIGHTNESS_CONTRAST, p=0.7),
            A.RandomGamma(GAMMA_PERCENT, p=0.5),
        ],
    }
    ops: list[Any] = []
    for part in AUGMENT_PARTS:
        if part in parts:
            ops += builders[part]()
    return ops


def build_transforms(
    cfg: DataConfig,
    split: str,
    omission: bool = False,
    omission_seed: int = 0,
) -> A.Compose:
    """The albumentations pipeline for a split.

    Train: resize, the augmentation parts of ``cfg.augment`` (plus a random horizontal flip when
    ``cfg.hflip``; see :func:`augmentation`), random block omission (probability
    ``cfg.omission_p``, side up to ``cfg.omission_max``; off when either is 0), normalise, to
    tensor. Val / test: resize, normalise, to tensor. ``omission=True`` adds (or, in training,
    replaces the random one with) a seeded block on every image, repeatable per image.

    Args:
        cfg: a ``DataConfig`` (reads image_size, hflip, augment, ignore_index, omission_max,
            omission_p, mean, std).
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
    if split == "train":
        ops += augmentation(augment_parts(cfg.augment, cfg.hflip), size, cfg.ignore_index)
    if omission:
        ops.append(BlockOmission(cfg.omission_max, fixed_seed=omission_seed, p=1.0))
    elif split == "train" and cfg.omission_max > 0 and cfg.omission_p > 0:
        ops.append(BlockOmission(cfg.omission_max, p=cfg.omission_p))
    ops += [
        A.Normalize(mean=tuple(cfg.mean), std=tuple(cfg.std), max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose(ops)


__all__ = ["BlockOmission", "augmentation", "build_transforms"]
