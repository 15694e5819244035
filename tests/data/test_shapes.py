"""The embedded shapes dataset: repeatable, its masks genuinely ambiguous given the image, in each
kind of ambiguity (nested, exclusive, independent, flip, mixed) with the masks' probabilities."""

import hashlib

import numpy as np
import pytest
import torch
from scipy import ndimage

from segcvae.config import Config, DataConfig
from segcvae.data import ShapesDataset, build_dataset, build_transforms
from segcvae.data.shapes_kinds import FLIP_PROBS, PART_PROBS
from segcvae.metrics import pairwise_iou
from tests.conftest import data_cfg


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
    cfg = data_cfg(image_size=32)
    ds = ShapesDataset("train", 10, image_size=64, transform=build_transforms(cfg, "train"))
    torch.manual_seed(0)
    for i in range(10):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["masks"].shape == (3, 32, 32) and item["masks"].dtype == torch.int64
        assert any(torch.equal(item["mask"], m) for m in item["masks"])


def test_config_sizes_and_validation():
    cfg = data_cfg(shapes_train_size=5, shapes_val_size=3, shapes_test_size=2)
    assert [len(build_dataset(cfg, s)) for s in ("train", "val", "test")] == [5, 3, 2]
    with pytest.raises(ValueError, match="too small"):
        ShapesDataset("train", 5, image_size=16, completions=4)
    with pytest.raises(ValueError, match="data.shapes.classes"):
        ShapesDataset("train", 5, num_shapes=9)
    with pytest.raises(IndexError):
        ShapesDataset("train", 5)[5]


# --- the kinds of ambiguity (data.shapes.ambiguity) ----------------------------------------------

KINDS = {"exclusive": 3, "independent": 27, "flip": 8, "mixed": 27}  # kind -> M


def _hash(ds: ShapesDataset, indices: list[int]) -> str:
    digest = hashlib.sha256()
    for i in indices:
        sample = ds.load(i)
        assert sample.mask_probs is None
        for a in (sample.image, sample.mask, sample.masks):
            digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def test_nested_items_are_bit_identical_to_before_the_kinds():
    # hashes computed on commit 31b95b7, before data.shapes.ambiguity existed
    ds = ShapesDataset("train", 50, seed=0, ambiguity="nested")
    assert _hash(ds, [0, 1, 2, 17, 49]) == (
        "5f9af024d5bc25bb053ff7fc5340186b9a96262d246b53597bb508736eb72e46"
    )
    ds = ShapesDataset("test", 50, 48, num_shapes=5, completions=2, difficulty=0.8, seed=3)
    assert _hash(ds, [0, 5, 31]) == (
        "fb0a34407612bde42eb5d4b138917b459e56c92759142a7d486b769489db2766"
    )
    assert "mask_probs" not in build_dataset(DataConfig(), "val")[0]


def _modes(item: dict) -> tuple[np.ndarray, np.ndarray]:
    keep = item["mask_probs"] > 0
    return item["masks"][keep], item["mask_probs"][keep]


@pytest.mark.parametrize("kind", KINDS)
def test_kind_items_carry_all_masks_and_their_probabilities(kind):
    ds = build_dataset(data_cfg(shapes_ambiguity=kind, shapes_val_size=60), "val")
    assert ds.num_modes == KINDS[kind] and ds.masks_are_modes
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (64, 64, 3) and item["masks"].shape == (KINDS[kind], 64, 64)
        probs = item["mask_probs"]
        assert probs.shape == (KINDS[kind],) and probs.dtype == np.float32
        assert abs(float(probs.sum()) - 1) < 1e-6 and (probs >= 0).all()
        modes, mode_probs = _modes(item)
        assert len(np.unique(modes.reshape(len(modes), -1), axis=0)) == len(modes)  # distinct
        # padding: copies of the first mask with probability 0
        assert all(np.array_equal(m, item["masks"][0]) for m in item["masks"][probs == 0])
        assert any(np.array_equal(item["mask"], m) for m in modes)


@pytest.mark.parametrize("kind", KINDS)
def test_kind_items_are_deterministic_per_seed_split_and_index(kind):
    a, b = ShapesDataset("train", 9, ambiguity=kind), ShapesDataset("train", 9, ambiguity=kind)
    for i in (0, 4, 8):
        x, y = a[i], b[i]
        for key in ("image", "mask", "masks", "mask_probs"):
            assert np.array_equal(x[key], y[key])
    assert not np.array_equal(a[0]["image"], ShapesDataset("test", 9, ambiguity=kind)[0]["image"])
    other = ShapesDataset("train", 9, seed=1, ambiguity=kind)
    assert not np.array_equal(a[0]["image"], other[0]["image"])


@pytest.mark.parametrize("size", [64, 32])
@pytest.mark.parametrize("kind", KINDS)
def test_distinct_modes_are_apart_at_the_mode_threshold(kind, size):
    # a hypothesis counts as a mode at IoU >= 0.9: two plausible masks must never both be one
    ds = ShapesDataset("test", 150, image_size=size, ambiguity=kind)
    worst = 0.0
    for i in range(len(ds)):
        modes = torch.as_tensor(_modes(ds[i])[0])
        iou = pairwise_iou(modes, modes, ds.num_classes).fill_diagonal_(0)
        worst = max(worst, float(iou.max()))
    assert 0.3 < worst < 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_drawn_mask_follows_the_probabilities(kind):
    # rank the modes of each item by probability; the drawn mask lands on rank r as often as
    # the items' r-th probabilities add up to (within 4 standard deviations)
    n = 1500
    ds = ShapesDataset("train", n, ambiguity=kind)
    observed, expected, variance = np.zeros(27), np.zeros(27), np.zeros(27)
    for i in range(n):
        item = ds[i]
        order = np.argsort(-item["mask_probs"], kind="stable")
        drawn = [j for j in order if np.array_equal(item["masks"][j], item["mask"])][0]
        observed[list(order).index(drawn)] += 1
        p = item["mask_probs"][order].astype(np.float64)
        expected[: len(p)] += p
        variance[: len(p)] += p * (1 - p)
    assert observed[0] > 0.25 * n  # the likeliest mode is drawn most
    assert (np.abs(observed - expected) <= 4 * np.sqrt(variance) + 1).all(), (observed, expected)


def test_exclusive_arm_is_under_one_patch_and_darker_patches_are_likelier():
    ds = ShapesDataset("val", 200, ambiguity="exclusive")
    weights = {0.6, 0.3, 0.1, 2 / 3, 1 / 3, 6 / 7, 1 / 7, 0.75, 0.25}
    for i in range(len(ds)):
        item = ds.render(i)
        hub = np.logical_and.reduce(item.masks > 0)  # in every mode: the visible square
        assert hub.sum() > 0 and not (hub & item.occluder).any()
        assert (item.image[hub].astype(int) - item.image[hub].mean(0)).std() < 25  # one colour
        brightness = []
        for mask, p in zip(item.masks, item.probs, strict=True):
            arm = (mask > 0) & ~hub
            assert arm.sum() > 0.5 * hub.sum() and not (arm & ~item.occluder).any()
            assert any(abs(p - w) < 1e-9 for w in weights)
            brightness.append(item.image[arm].mean())
        assert (np.diff(item.probs) < 0).all() and (np.diff(brightness) > 0).all()
        arms = [(m > 0) & ~hub for m in item.masks]
        assert not any((a & b).any() for j, a in enumerate(arms) for b in arms[j + 1 :])


def _factorises(masks: np.ndarray, probs: np.ndarray, parts: list[np.ndarray]) -> list[list]:
    """Check that the joint probabilities are the product of the parts' marginals.

    Returns:
        Per part (the pixels a part covers in any mode), its alternatives' marginal
        probabilities, the alternative covering the fewest pixels first.
    """
    keys = [[m[part].tobytes() for m in masks] for part in parts]  # each mode's state of a part
    marginals = [{s: probs[[k == s for k in key]].sum() for s in set(key)} for key in keys]
    for j, p in enumerate(probs):
        joint = np.prod([mar[key[j]] for mar, key in zip(marginals, keys, strict=True)])
        assert abs(p - joint) < 1e-9
    area = [
        {s: m[part].astype(bool).sum() for m, s in zip(masks, key, strict=True)}
        for part, key in zip(parts, keys, strict=True)
    ]
    return [
        [mar[s] for s in sorted(mar, key=a.get)] for mar, a in zip(marginals, area, strict=True)
    ]


def test_independent_parts_choose_their_lengths_independently():
    ds = ShapesDataset("val", 150, ambiguity="independent")
    counts = set()
    for i in range(len(ds)):
        item = ds.render(i)
        classes = [c for c in np.unique(item.masks) if c > 0]  # one class per part
        assert len(classes) in (2, 3)
        assert not ((item.masks != item.masks[0]).any(0) & ~item.occluder).any()
        band = item.image[item.occluder].astype(int)
        assert (np.abs(band[:, 0] - band[:, 1]) < 40).all()  # the hidden ends never show
        parts = [(item.masks == c).any(0) for c in classes]
        marginals = _factorises(item.masks, item.probs, parts)
        for marginal in marginals:  # shortest hidden length first
            assert np.allclose(marginal, PART_PROBS[len(marginal)])
        assert len(item.masks) == np.prod([len(m) for m in marginals])
        counts.add(len(item.masks))
    assert {4, 8, 27} <= counts


def test_flip_regions_flip_between_the_two_colours_they_show():
    ds = ShapesDataset("val", 150, ambiguity="flip")
    for i in range(len(ds)):
        item = ds.render(i)
        fg = item.masks[0] > 0
        assert all(np.array_equal(m > 0, fg) for m in item.masks)  # only the classes change
        regions, n = ndimage.label(fg)
        assert n in (2, 3) and len(item.masks) == 2**n
        marginals = _factorises(item.masks, item.probs, [regions == r for r in range(1, n + 1)])
        assert [len(m) for m in marginals] == [2] * n
        for r in range(1, n + 1):
            inside = regions == r
            classes = sorted({int(m[inside][0]) for m in item.masks})
            colours = item.image[inside].astype(float)
            for c in classes:  # each candidate class's colour covers part of the object
                near = np.abs(colours - np.asarray(ds.palette[c])).max(1) < 40
                assert 0.3 < near.mean() < 0.7
            p_low = item.probs[[int(m[inside][0]) == classes[0] for m in item.masks]].sum()
            assert abs(p_low - FLIP_PROBS[sum(classes) % 3]) < 1e-9


def test_mixed_items_are_the_items_of_their_kind():
    mixed = ShapesDataset("train", 200, ambiguity="mixed")
    kinds = [mixed.kind(i) for i in range(len(mixed))]
    assert all(kinds.count(k) > 30 for k in ("nested", "exclusive", "independent", "flip"))
    for i in range(8):
        item, own = mixed[i], ShapesDataset("train", 200, ambiguity=kinds[i])[i]
        m = len(own["masks"])
        assert np.array_equal(item["image"], own["image"])
        assert np.array_equal(item["masks"][:m], own["masks"])
        if kinds[i] == "nested":  # equally likely, padded to 27
            assert np.allclose(item["mask_probs"][:m], 1 / m) and "mask_probs" not in own
        else:
            assert np.allclose(item["mask_probs"][:m], own["mask_probs"])


def test_kind_items_batch_after_transforms():
    cfg = data_cfg(image_size=32, shapes_ambiguity="mixed", shapes_train_size=8)
    ds = build_dataset(cfg, "train", build_transforms(cfg, "train"))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch["masks"].shape == (8, 27, 32, 32) and batch["mask_probs"].shape == (8, 27)
    assert torch.allclose(batch["mask_probs"].sum(1), torch.ones(8))


def test_kind_validation_names_the_key():
    with pytest.raises(ValueError, match="data.shapes.classes: expected >= 2"):
        ShapesDataset("train", 5, num_shapes=1, ambiguity="flip")
    with pytest.raises(ValueError, match="data.shapes.classes"):
        Config.from_yaml(None, ["data.shapes.ambiguity=independent", "data.shapes.classes=1"])
    with pytest.raises(ValueError, match="data.image_size: expected >= 32"):
        ShapesDataset("train", 5, image_size=24, ambiguity="exclusive")
    with pytest.raises(ValueError, match="data.shapes.ambiguity"):
        ShapesDataset("train", 5, ambiguity="both")
    with pytest.raises(ValueError, match="data.shapes.ambiguity"):
        Config.from_yaml(None, ["data.shapes.ambiguity=both"])
    one_class = ShapesDataset("train", 5, num_shapes=1, ambiguity="exclusive")[0]
    assert set(np.unique(one_class["masks"])) == {0, 1}
