"""The embedded lesions dataset: repeatable, raters who disagree about presence and boundary, and
an image that tells how many of them mark its finding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, binary_erosion

from segcvae.config import Config, ConfigError, DataConfig
from segcvae.data import LesionsDataset, build_dataset, build_transforms
from segcvae.data.lesions import NOISE, conspicuity
from segcvae.data.raters import majority_vote_np


def test_items_are_repeatable_and_seeded() -> None:
    a, b = LesionsDataset("train", 20, seed=1), LesionsDataset("train", 20, seed=1)
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["masks"], y["masks"])
        assert x["id"] == y["id"] == f"lesions-train-{i:06d}"
    assert not np.array_equal(a[0]["image"], LesionsDataset("train", 20, seed=2)[0]["image"])
    assert not np.array_equal(a[0]["image"], LesionsDataset("val", 20, seed=1)[0]["image"])
    with pytest.raises(IndexError):
        a.render(20)


def test_item_layout() -> None:
    ds = LesionsDataset("val", 10, image_size=48, raters=5)
    item = ds[0]
    assert item["image"].shape == (48, 48, 3) and item["image"].dtype == np.uint8
    assert (item["image"][..., 0] == item["image"][..., 2]).all()  # a grey scan
    assert item["masks"].shape == (5, 48, 48) and item["masks"].dtype == np.int64
    assert item["mask"].shape == (48, 48)
    assert ds.num_classes == 2 and ds.class_names == ["background", "lesion"]
    assert not ds.masks_are_modes  # the masks are a sample of raters, not every answer


def test_raters_disagree_about_presence_in_the_proportions_drawn() -> None:
    ds = LesionsDataset("train", 600, raters=4)
    counts = np.zeros(5, int)
    for i in range(len(ds)):
        item = ds.render(i)
        nonempty = item.masks.reshape(4, -1).any(1)
        assert nonempty.sum() == item.marked  # exactly k raters mark it, the others are empty
        assert item.finding.any() == (item.marked > 0)  # k = 0: nothing in the image at all
        assert set(np.unique(item.masks)) <= {0, 1}
        counts[item.marked] += 1
    share = counts / counts.sum()
    # nothing 1/4, obvious (all 4 raters) 1/4, each of 1..3 raters 1/6
    assert share[0] == pytest.approx(0.25, abs=0.05) and share[4] == pytest.approx(0.25, abs=0.05)
    assert np.allclose(share[1:4], 1 / 6, atol=0.05)


def test_marking_raters_differ_only_along_the_boundary() -> None:
    ds = LesionsDataset("train", 300, raters=4)
    differ = 0
    for i in range(len(ds)):
        item = ds.render(i)
        if item.marked == 0:
            continue
        grown = binary_dilation(item.finding, iterations=2)
        core = binary_erosion(item.finding, iterations=2)
        marks = [m.astype(bool) for m in item.masks if m.any()]
        for m in marks:
            assert not (m & ~grown).any() and not (core & ~m).any()
        differ += int(len({m.tobytes() for m in marks}) > 1)
    assert differ > 50  # raters draw their own boundaries


def test_the_reference_mask_is_the_majority_vote() -> None:
    ds = LesionsDataset("test", 40, raters=4)
    for i in range(len(ds)):
        item = ds.render(i)
        assert np.array_equal(ds[i]["mask"], majority_vote_np(item.masks, 2))
        # ties go to the foreground: a finding 2 of 4 raters mark is in the reference
        assert ds[i]["mask"].any() == (item.marked >= 2)


def _measured_conspicuity(item) -> float:
    """Contrast read off the image (finding vs a ring around it) times radius, in noise units."""
    image = item.image[..., 0].astype(float)
    ring = binary_dilation(item.finding, iterations=5) & ~binary_dilation(
        item.finding, iterations=2
    )
    contrast = image[item.finding].mean() - image[ring].mean()
    return contrast * item.radius / (NOISE * item.image.shape[0] / 16)


def test_the_image_shows_how_many_raters_mark_the_finding() -> None:
    """Contrast times size, as the image shows it, orders the findings by the raters who mark it."""
    ds = LesionsDataset("train", 400, raters=4)
    by_level: dict[int, list[float]] = {k: [] for k in range(1, 5)}
    radii: dict[int, list[float]] = {k: [] for k in range(1, 5)}
    for i in range(len(ds)):
        item = ds.render(i)
        if item.marked:
            radii[item.marked].append(item.radius)
            assert item.contrast * item.radius / (NOISE * 64 / 16) == pytest.approx(
                conspicuity(item.marked, 4)
            )
            by_level[item.marked].append(_measured_conspicuity(item))
    means = [np.mean(by_level[k]) for k in range(1, 5)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False))
    # a threshold halfway between the levels' designed values reads k right most of the time
    cuts = [(conspicuity(k, 4) + conspicuity(k + 1, 4)) / 2 for k in range(1, 4)]
    right = sum(
        int(np.searchsorted(cuts, v)) + 1 == k for k, vs in by_level.items() for v in vs
    ) / sum(len(vs) for vs in by_level.values())
    assert right > 0.7
    # size alone does not tell: small and large findings at every level
    assert min(radii[1]) < np.median(radii[4]) < max(radii[1])


def test_build_dataset_and_config_keys() -> None:
    cfg = Config.from_yaml(None, ["data.name=lesions", "data.lesions.val_size=5"]).data
    ds = build_dataset(cfg, "val", build_transforms(cfg, "val"))
    assert len(ds) == 5 and isinstance(ds, LesionsDataset)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["masks"].shape == (4, 64, 64)
    assert item["masks"].dtype == torch.int64
    for override, key in (
        ("data.lesions.raters=0", "data.lesions.raters"),
        ("data.lesions.test_size=0", "data.lesions.test_size"),
        ("data.image_size=16", "data.image_size"),
    ):
        with pytest.raises(ConfigError, match=key):
            Config.from_yaml(None, ["data.name=lesions", override, "model.encoder_depth=4"])
    with pytest.raises(ConfigError, match="data.image_size"):
        LesionsDataset("train", 4, image_size=16)
    assert DataConfig().lesions.raters == 4
