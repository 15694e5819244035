"""build_transforms and BlockOmission: image-only, at most 40% of each side, repeatable."""

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from segcvae.data import (
    BlockOmission,
    Sample,
    SegmentationDataset,
    ShapesDataset,
    build_dataset,
    build_transforms,
)
from tests.conftest import data_cfg


def _block(image):
    """Bounding box (height, width) of the zeroed pixels of an all-255 image, and whether the
    zeros fill that box exactly."""
    zeros = (image == 0).all(-1)
    if not zeros.any():
        return 0, 0, True
    rows, cols = np.where(zeros.any(1))[0], np.where(zeros.any(0))[0]
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    return h, w, zeros.sum() == h * w


def test_block_omission_changes_only_the_image():
    rng = np.random.default_rng(0)
    image = np.full((100, 80, 3), 255, np.uint8)
    mask = rng.integers(0, 3, (100, 80)).astype(np.uint8)
    masks = rng.integers(0, 3, (2, 100, 80)).astype(np.uint8)
    t = A.Compose([BlockOmission(0.4, square=False)], seed=0)
    fractions = []
    for _ in range(300):
        out = t(image=image, mask=mask, masks=masks)
        assert np.array_equal(out["mask"], mask) and np.array_equal(out["masks"], masks)
        h, w, is_box = _block(out["image"])
        assert is_box and h <= 0.4 * 100 and w <= 0.4 * 80  # one rectangle, within 40% per side
        fractions += [h / 100, w / 80]
    # side ~ U(0, 0.4): mean 0.2, and the largest draws come close to the bound
    assert np.mean(fractions) == pytest.approx(0.2, abs=0.02) and max(fractions) > 0.37


def test_square_blocks_and_bounds():
    t = A.Compose([BlockOmission(0.4)], seed=1)
    image = np.full((64, 64, 3), 255, np.uint8)
    for _ in range(50):
        h, w, _ = _block(t(image=image)["image"])
        assert h == w <= 25
    with pytest.raises(ValueError, match="max_fraction"):
        BlockOmission(1.5)


def test_seeded_block_is_a_function_of_seed_and_image():
    rng = np.random.default_rng(0)
    images = [rng.integers(1, 255, (64, 64, 3), np.uint8) for _ in range(20)]
    first = A.Compose([BlockOmission(0.4, fixed_seed=7)])
    second = A.Compose([BlockOmission(0.4, fixed_seed=7)], seed=123)  # its own RNG is irrelevant
    out1 = [first(image=x)["image"] for x in images]
    out2 = [second(image=x)["image"] for x in reversed(images)][::-1]  # other order
    assert all(np.array_equal(a, b) for a, b in zip(out1, out2, strict=True))
    other_seed = A.Compose([BlockOmission(0.4, fixed_seed=8)])
    same = sum(
        np.array_equal(other_seed(image=x)["image"], y) for x, y in zip(images, out1, strict=True)
    )
    assert same <= 2
    blocks = {tuple(np.argwhere((y == 0).all(-1)).min(0)) for y in out1 if (y == 0).any()}
    assert len(blocks) > 10  # different images get different blocks


def test_random_training_blocks_follow_the_seed():
    image = np.full((64, 64, 3), 255, np.uint8)

    def draws(seed):
        t = A.Compose([BlockOmission(0.4)], seed=seed)
        return [_block(t(image=image)["image"])[:2] for _ in range(10)]

    assert draws(3) == draws(3) and draws(3) != draws(4)


def test_pipelines_per_split():
    cfg = data_cfg(image_size=32)
    image = np.full((50, 40, 3), 255, np.uint8)
    mask = np.zeros((50, 40), np.uint8)
    mask[:, :20] = 1
    val = build_transforms(cfg, "val")(image=image, mask=mask)
    assert val["image"].shape == (3, 32, 32) and val["image"].dtype == torch.float32
    white = (1 - np.array(cfg.mean)) / np.array(cfg.std)
    assert torch.allclose(val["image"][:, 0, 0], torch.tensor(white, dtype=torch.float32))
    assert set(val["mask"].unique().tolist()) == {0, 1}  # nearest-neighbour resize
    names = [type(t).__name__ for t in build_transforms(cfg, "train")]
    assert names == ["Resize", "HorizontalFlip", "BlockOmission", "Normalize", "ToTensorV2"]
    off = data_cfg(hflip=False, omission_max=0.0)
    assert [type(t).__name__ for t in build_transforms(off, "train")] == [
        "Resize",
        "Normalize",
        "ToTensorV2",
    ]
    # seeded omission: zeros in raw pixel space, i.e. (0 - mean) / std after normalisation
    out = build_transforms(cfg, "test", omission=True, omission_seed=1)(image=image, mask=mask)
    zero = torch.tensor(-np.array(cfg.mean) / np.array(cfg.std), dtype=torch.float32)
    hit = torch.isclose(out["image"], zero[:, None, None]).all(0)
    assert 0 < hit.sum() <= (0.4 * 32) ** 2 and torch.equal(out["mask"], val["mask"])
    with pytest.raises(ValueError, match="unknown split"):
        build_transforms(cfg, "dev")


def test_seeded_omission_is_repeatable_per_item_across_loaders():
    cfg = data_cfg(image_size=32, shapes_test_size=12)
    transform = build_transforms(cfg, "test", omission=True, omission_seed=5)
    ds = build_dataset(cfg, "test", transform)
    single = torch.stack([ds[i]["image"] for i in reversed(range(12))]).flip(0)
    loader = DataLoader(ds, batch_size=5, num_workers=2, shuffle=False)
    batched = torch.cat([batch["image"] for batch in loader])
    assert torch.equal(single, batched)
    fresh = build_dataset(
        cfg, "test", build_transforms(cfg, "test", omission=True, omission_seed=6)
    )
    assert not torch.equal(fresh[0]["image"], single[0])


def test_training_augmentation_follows_torch_seed():
    cfg = data_cfg(image_size=32)

    def epoch(seed, workers):
        torch.manual_seed(seed)
        ds = ShapesDataset("train", 8, image_size=32, transform=build_transforms(cfg, "train"))
        loader = DataLoader(ds, batch_size=4, num_workers=workers)
        return torch.cat([b["image"] for b in loader])

    assert torch.equal(epoch(0, 0), epoch(0, 0))
    assert not torch.equal(epoch(0, 0), epoch(1, 0))
    assert torch.equal(epoch(0, 2), epoch(0, 2))


class _Constant(SegmentationDataset):
    """Eight copies of one white image: any difference between items is augmentation."""

    class_names = ["background", "thing"]
    palette = [(0, 0, 0), (255, 255, 255)]

    def __len__(self):
        return 8

    def load(self, index):
        return Sample(np.full((32, 32, 3), 255, np.uint8), np.zeros((32, 32), np.uint8), str(index))


def test_workers_do_not_repeat_each_others_augmentation():
    torch.manual_seed(0)
    ds = _Constant("train", build_transforms(data_cfg(image_size=32, hflip=False), "train"))
    images = [b["image"][0] for b in DataLoader(ds, batch_size=1, num_workers=2)]
    # items 2k and 2k+1 come from different workers, each worker's k-th draw
    assert sum(torch.equal(images[2 * k], images[2 * k + 1]) for k in range(4)) == 0
