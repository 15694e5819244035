"""The embedded shapes dataset: repeatable, and its masks genuinely ambiguous given the image."""

import numpy as np
import pytest
import torch

from segcvae.config import DataConfig
from segcvae.data import ShapesDataset, build_dataset, build_transforms


def test_items_are_repeatable_and_seeded():
    a, b = ShapesDataset("train", 20, seed=1), ShapesDataset("train", 20, seed=1)
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["mask"], y["mask"])
        assert x["id"] == y["id"] == f"shapes-train-{i:06d}"
    assert not np.array_equal(a[0]["image"], ShapesDataset("train", 20, seed=2)[0]["image"])
    assert not np.array_equal(a[0]["image"], ShapesDataset("val", 20, seed=1)[0]["image"])


def test_item_layout_and_classes():
    ds = ShapesDataset("val", 60, image_size=48, num_shapes=4, completions=2)
    item = ds[0]
    assert item["image"].shape == (48, 48, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (48, 48) and item["mask"].dtype == np.int64
    assert item["masks"].shape == (2, 48, 48) and item["masks"].dtype == np.int64
    assert ds.num_classes == 5 and len(ds.palette) == 5 and ds.class_names[0] == "background"
    seen = set()
    for i in range(len(ds)):
        seen |= set(np.unique(ds[i]["mask"]).tolist())
    assert seen == {0, 1, 2, 3, 4}


def test_masks_are_ambiguous_only_under_the_occluder():
    ds = ShapesDataset("train", 200, completions=3)
    chosen = np.zeros(3, int)
    for i in range(len(ds)):
        item = ds.render(i)
        masks = item.masks.astype(int)
        # the M completions are distinct, nested, and agree wherever the image shows anything
        areas = [(m > 0).sum() for m in masks]
        assert areas[0] < areas[1] < areas[2]
        differ = (masks != masks[0]).any(0)
        assert differ.any() and not (differ & ~item.occluder).any()
        # the hidden part never shows: the occluder pixels carry no object colour
        band = item.image[item.occluder].astype(int)
        assert (np.abs(band[:, 0] - band[:, 1]) < 40).all()  # grey stripes, no saturated colour
        chosen[item.choice] += 1
        assert np.array_equal(ds[i]["mask"], masks[item.choice])
    assert (chosen > 40).all()  # each completion is used (uniform: ~67 each)


def test_chosen_mask_is_unpredictable_from_the_image():
    # one image is drawn for all M masks; the choice must not follow anything visible either
    ds = ShapesDataset("train", 300)
    rows = []
    for i in range(300):
        item = ds.render(i)
        visible = (item.masks[0] > 0) & ~item.occluder
        band = np.argwhere(item.occluder).mean(0)
        rows.append([item.choice, item.image.mean(), visible.sum(), band[0] + band[1]])
    rows = np.array(rows, float)
    for column in range(1, rows.shape[1]):
        assert abs(np.corrcoef(rows[:, 0], rows[:, column])[0, 1]) < 0.2  # ~3.5 sigma at n=300


def test_transform_moves_mask_and_all_masks_together():
    cfg = DataConfig(image_size=32)
    ds = ShapesDataset("train", 10, image_size=64, transform=build_transforms(cfg, "train"))
    torch.manual_seed(0)
    for i in range(10):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["masks"].shape == (3, 32, 32) and item["masks"].dtype == torch.int64
        assert any(torch.equal(item["mask"], m) for m in item["masks"])


def test_config_sizes_and_validation():
    cfg = DataConfig(shapes_train_size=5, shapes_val_size=3, shapes_test_size=2)
    assert [len(build_dataset(cfg, s)) for s in ("train", "val", "test")] == [5, 3, 2]
    with pytest.raises(ValueError, match="too small"):
        ShapesDataset("train", 5, image_size=16, completions=4)
    with pytest.raises(ValueError, match="data.shapes_classes"):
        ShapesDataset("train", 5, num_shapes=9)
    with pytest.raises(IndexError):
        ShapesDataset("train", 5)[5]
