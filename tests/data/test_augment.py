"""Training augmentation (data.augment): every rater mask moves with its image, labels stay labels,
the border fill is the ignore index, intensity touches the image only, and draws follow the seed."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from segcvae.config import AUGMENT_PARTS, AUGMENT_PRESETS, Config, ConfigError, DataConfig
from segcvae.config import augment_parts as parts_of
from segcvae.data import Sample, SegmentationDataset, build_transforms
from segcvae.data.transforms import augmentation
from segcvae.engine.batches import ItemSeededTransform, SeededAugmentation

GEOMETRIC = ["hflip", "vflip", "affine", "elastic"]
IGNORE = 250  # a data.ignore_index other than the default, so a hard-coded 255 would show


def _cfg(augment: str | list[str], **kw) -> DataConfig:
    """Raw pixels out (mean 0, std 1: image = value / 255), no block omission, no extra flip."""
    return DataConfig(
        image_size=32,
        augment=augment,
        hflip=False,
        omission_max=0.0,
        mean=[0.0, 0.0, 0.0],
        std=[1.0, 1.0, 1.0],
        ignore_index=IGNORE,
        **kw,
    )


class _Raters(SegmentationDataset):
    """Three raters whose masks are shifted copies of one rectangle; image channel r is rater r's
    foreground (255) on black, so every transformed image still shows where each mask must be."""

    class_names = ["background", "thing"]
    palette = [(0, 0, 0), (255, 255, 255)]

    def __len__(self) -> int:
        return 6

    def load(self, index: int) -> Sample:
        masks = np.zeros((3, 32, 32), np.uint8)
        for r in range(3):
            masks[r, 8 + index : 22, 5 + 4 * r : 17 + 4 * r] = 1
        image = np.ascontiguousarray((masks * 255).transpose(1, 2, 0))  # (32, 32, 3)
        return Sample(image=image, mask=masks[0].copy(), id=str(index), masks=masks)


def _dataset(augment: str | list[str], seeded: bool = False) -> tuple[_Raters, ItemSeededTransform]:
    transform = build_transforms(_cfg(augment), "train")
    wrapped = ItemSeededTransform(transform)
    return _Raters("train", wrapped if seeded else transform, ignore_index=IGNORE), wrapped


def test_presets_parts_and_the_flip_key() -> None:
    assert parts_of("none") == [] and parts_of("none", hflip=True) == ["hflip"]
    assert parts_of("mri") == ["hflip", "affine", "elastic", "intensity"]
    assert parts_of(["intensity", "geometric", "hflip"]) == ["hflip", "affine", "intensity"]
    assert parts_of(["flip"], hflip=True) == ["hflip"]  # one flip, however many ask for it
    assert all(set(p) <= set(AUGMENT_PARTS) for p in AUGMENT_PRESETS.values())
    assert augmentation(list(AUGMENT_PARTS), 32)  # every part has a builder
    flips = [type(t).__name__ for t in augmentation(["vflip", "hflip"], 32)]
    assert flips == ["HorizontalFlip", "VerticalFlip"]  # AUGMENT_PARTS order
    with pytest.raises(ValueError, match="'mirror'"):
        augmentation(["mirror"], 32)
    with pytest.raises(ConfigError, match=r"data\.augment: .*'mirror'"):
        parts_of(["flip", "mirror"])
    with pytest.raises(ConfigError, match=r"data\.augment"):
        Config.from_dict({"data": {"augment": "geometry"}})
    cfg = Config.from_yaml(None, ["data.augment=[geometric,intensity]"])
    assert cfg.data.augment == ["geometric", "intensity"] and Config().data.augment == "none"
    with pytest.raises(ConfigError, match=r"data\.augment"):
        Config.from_yaml(None, ["data.augment=3"])


def test_pipelines_with_augmentation() -> None:
    names = [type(t).__name__ for t in build_transforms(DataConfig(augment="mri"), "train")]
    assert names == [
        "Resize",
        "HorizontalFlip",
        "Affine",
        "ElasticTransform",
        "RandomBrightnessContrast",
        "RandomGamma",
        "BlockOmission",  # after the intensity part: the omitted block stays 0 in raw pixels
        "Normalize",
        "ToTensorV2",
    ]
    # the default is no augmentation beyond data.hflip, as before; evaluation never augments
    default = [type(t).__name__ for t in build_transforms(DataConfig(), "train")]
    assert default == ["Resize", "HorizontalFlip", "BlockOmission", "Normalize", "ToTensorV2"]
    val = [type(t).__name__ for t in build_transforms(DataConfig(augment="mri"), "val")]
    assert val == ["Resize", "Normalize", "ToTensorV2"]


def test_every_rater_mask_gets_the_transform_of_its_image() -> None:
    torch.manual_seed(0)
    ds, _ = _dataset(GEOMETRIC)
    changed = 0
    for _ in range(4):
        for i in range(len(ds)):
            item = ds[i]
            # where the image is all foreground (black), every pixel it was drawn from was
            # (was not) in that rater's mask: the nearest-neighbour mask must say the same
            fg, bg = item["image"] == 1.0, item["image"] == 0.0  # (3, H, W)
            masks = item["masks"]  # (3, H, W)
            assert torch.equal(item["mask"], masks[0])
            inside = masks != IGNORE
            changed += int(not torch.equal(masks, torch.from_numpy(ds.load(i).masks).long()))
            for r in range(3):
                assert (masks[r][fg[r]] == 1).all() and (masks[r][bg[r] & inside[r]] == 0).all()
                other = (masks[r] == 1) & bg[(r + 1) % 3]
                assert other.sum() > 20  # the shifted copy is told apart
    assert changed > 10  # the masks did move


def test_identical_masks_stay_identical() -> None:
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[5:25, 10:20] = 1
    t = A.Compose(augmentation(GEOMETRIC, 32, IGNORE), seed=0)
    for _ in range(10):
        out = t(image=image, mask=mask, masks=np.stack([mask] * 5))
        assert all(np.array_equal(m, out["mask"]) for m in out["masks"])


def test_labels_are_never_interpolated_and_ignore_stays_ignore() -> None:
    """Classes 1 and 2 and the ignore index are drawn into the image's channels 0, 1 and 2."""
    mask = np.zeros((32, 32), np.uint8)
    mask[4:14, 4:20] = 1
    mask[16:28, 8:24] = 2
    mask[6:12, 22:30] = IGNORE
    image = np.stack([(mask == v) * 255 for v in (1, 2, IGNORE)], -1).astype(np.uint8)
    t = A.Compose(augmentation(GEOMETRIC, 32, IGNORE), seed=1)
    for _ in range(20):
        out = t(image=image, mask=mask, masks=np.stack([mask, mask]))
        m = out["mask"]
        assert set(np.unique(out["masks"])) <= {0, 1, 2, IGNORE}
        for channel, value in enumerate((1, 2, IGNORE)):
            full = out["image"][..., channel] == 255  # every pixel it is drawn from has the label
            assert (m[full] == value).all()


def test_the_border_is_black_in_the_image_and_ignored_in_the_masks() -> None:
    image = np.full((32, 32, 3), 255, np.uint8)
    masks = np.ones((2, 32, 32), np.uint8)
    t = A.Compose(augmentation(["affine"], 32, IGNORE), seed=2)
    filled = 0
    for _ in range(20):
        out = t(image=image, masks=masks)
        outside = (out["image"] == 0).all(-1)
        inside = (out["image"] == 255).all(-1)
        assert (out["masks"][:, outside] == IGNORE).all() and (out["masks"][:, inside] == 1).all()
        filled += int(outside.any())
    assert filled > 5  # most draws rotate, scale or shift the image


def test_intensity_changes_the_image_only_and_keeps_a_grey_scan_grey() -> None:
    grey = np.random.default_rng(0).integers(20, 230, (32, 32), np.uint8)
    image = np.repeat(grey[..., None], 3, -1)
    masks = np.random.default_rng(1).integers(0, 2, (3, 32, 32)).astype(np.uint8)
    masks[:, :2] = IGNORE
    t = A.Compose(augmentation(["intensity"], 32, IGNORE), seed=3)
    changed = 0
    for _ in range(20):
        out = t(image=image, mask=masks[0], masks=masks)
        assert np.array_equal(out["masks"], masks) and np.array_equal(out["mask"], masks[0])
        x = out["image"]
        assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
        changed += int(not np.array_equal(x, image))
    assert changed > 10


def test_an_item_depends_only_on_seed_epoch_and_index() -> None:
    """Exact resume: SeededAugmentation's (seed, epoch, index) fixes every draw of every part."""

    def items(epoch: int, order: list[int]) -> dict[int, dict]:
        ds, transform = _dataset("mri", seeded=True)
        seeded = SeededAugmentation(ds, transform, seed=7)
        seeded.set_epoch(epoch)
        return {i: seeded[i] for i in order}

    first = items(0, list(range(6)))
    again = items(0, [5, 3, 1, 0, 2, 4])  # a fresh dataset, another order
    for i in range(6):
        assert torch.equal(first[i]["image"], again[i]["image"])
        assert torch.equal(first[i]["masks"], again[i]["masks"])
    other = items(1, list(range(6)))
    assert any(not torch.equal(first[i]["masks"], other[i]["masks"]) for i in range(6))
