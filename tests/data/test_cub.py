"""CUB-200-2011 on the real images (classes 001-010) with masks written in the official layout."""

import logging

import cv2
import numpy as np
import pytest
import torch

from segcvae.data import CUBDataset, DataError, build_dataset, build_transforms
from tests.conftest import data_replace

from .conftest import CUB_TEST_CLASSES


def _official(cub_root, classes):
    meta = cub_root / "CUB_200_2011"
    paths = dict(line.split() for line in (meta / "images.txt").read_text().splitlines())
    train = dict(line.split() for line in (meta / "train_test_split.txt").read_text().splitlines())
    ids = [i for i, rel in paths.items() if int(rel[:3]) in classes]
    return {i for i in ids if train[i] == "1"}, {i for i in ids if train[i] == "0"}, paths


def test_splits_follow_the_official_list(cub_cfg, cub_root):
    train_ids, test_ids, paths = _official(cub_root, CUB_TEST_CLASSES)
    stems = {i: rel.split("/")[1][:-4] for i, rel in paths.items()}
    ds = {s: build_dataset(cub_cfg, s) for s in ("train", "val", "test")}
    got = {s: {item[0].split("/")[1][:-4] for item in d.items} for s, d in ds.items()}
    assert got["test"] == {stems[i] for i in test_ids}
    assert got["train"] | got["val"] == {stems[i] for i in train_ids}
    assert not got["train"] & got["val"]
    assert 0.04 < len(got["val"]) / len(train_ids) < 0.2  # ~10% held out
    # the held-out draw is made before the class subset: one class gives a subset of the same val
    one = build_dataset(data_replace(cub_cfg, cub={"classes": [1]}), "val")
    assert {item[0] for item in one.items} <= {item[0] for item in ds["val"].items}
    other_seed = build_dataset(data_replace(cub_cfg, split_seed=1), "val")
    assert {item[0] for item in other_seed.items} != {item[0] for item in ds["val"].items}


def test_item_mask_is_thresholded_annotator_average(cub_cfg, cub_segmentations):
    ds = build_dataset(cub_cfg, "train")
    item = ds[0]
    written = cv2.imread(str(ds.mask_path(ds.items[0][0])), cv2.IMREAD_UNCHANGED)
    assert item["image"].shape == written.shape + (3,) and item["image"].dtype == np.uint8
    assert item["mask"].dtype == np.int64
    assert np.array_equal(item["mask"], (written >= 128).astype(np.int64))
    loose = build_dataset(data_replace(cub_cfg, cub={"mask_threshold": 50}), "train")[0]["mask"]
    assert loose.sum() > item["mask"].sum()  # the 100-valued ring now counts
    assert ds.num_classes == 2 and ds.class_names == ["background", "bird"]


def test_grayscale_photograph_becomes_rgb(cub_cfg):
    found = [
        (ds, k)
        for ds in (build_dataset(cub_cfg, s) for s in ("train", "val", "test"))
        for k, it in enumerate(ds.items)
        if "Brewer_Blackbird_0028_2682" in it[0]
    ]
    assert len(found) == 1
    ds, index = found[0]
    assert cv2.imread(str(ds.image_dir / ds.items[index][0]), cv2.IMREAD_UNCHANGED).ndim == 2
    image = ds[index]["image"]
    assert image.shape[2] == 3
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 1], image[..., 2]
    )


def test_crop_to_bounding_box_with_margin(cub_cfg):
    full = build_dataset(cub_cfg, "test")
    cropped = build_dataset(data_replace(cub_cfg, cub_crop=True, cub_crop_margin=0.0), "test")
    _, (x, y, w, h) = full.items[0]
    item = cropped[0]
    assert item["image"].shape[:2] == item["mask"].shape
    assert abs(item["mask"].shape[0] - h) <= 2 and abs(item["mask"].shape[1] - w) <= 2
    margin = build_dataset(data_replace(cub_cfg, cub_crop=True, cub_crop_margin=0.1), "test")[0]
    assert margin["mask"].shape[0] > item["mask"].shape[0]
    assert margin["mask"].sum() == full[0]["mask"].sum()  # the bird lies inside its box


def test_transforms(cub_cfg):
    item = build_dataset(cub_cfg, "val", build_transforms(cub_cfg, "val"))[0]
    assert item["image"].shape == (3, 128, 128) and item["mask"].shape == (128, 128)
    assert item["mask"].dtype == torch.int64


def test_listed_but_missing_files_are_named(cub_root, cub_segmentations, caplog):
    with pytest.raises(DataError, match=r"missing files: .*\.(jpg|png).*data\.cub\.classes"):
        CUBDataset(cub_root, "test", segmentations_dir=cub_segmentations)
    with caplog.at_level(logging.WARNING):
        ds = CUBDataset(cub_root, "test", segmentations_dir=cub_segmentations, on_bad_sample="skip")
    _, test_ids, _ = _official(cub_root, CUB_TEST_CLASSES)
    assert len(ds) == len(test_ids)
    assert f"{5794 - len(test_ids)} of 5794 items" in caplog.text
    with pytest.raises(DataError, match=r"segmentations/004\.Groove_billed_Ani/.*\.png"):
        CUBDataset(cub_root, "train", classes=[4], segmentations_dir=cub_segmentations)


def test_missing_folders_and_bad_classes(cub_root, cub_segmentations, tmp_path):
    with pytest.raises(DataError, match="segmentation folder not found"):
        CUBDataset(cub_root, "train", classes=[1])
    with pytest.raises(DataError, match="CUB_200_2011"):
        CUBDataset(tmp_path, "train", segmentations_dir=cub_segmentations)
    with pytest.raises(ValueError, match="1-200"):
        CUBDataset(cub_root, "train", classes=[201], segmentations_dir=cub_segmentations)
    with pytest.raises(ValueError, match="unknown split"):
        CUBDataset(cub_root, "validation", segmentations_dir=cub_segmentations)


def test_image_mask_size_mismatch(cub_root, cub_segmentations, tmp_path):
    seg = tmp_path / "segmentations"
    source = cub_segmentations / "001.Black_footed_Albatross"
    (seg / source.name).mkdir(parents=True)
    for png in source.iterdir():
        (seg / source.name / png.name).write_bytes(png.read_bytes())
    ds = CUBDataset(cub_root, "test", classes=[1], segmentations_dir=seg)
    target = ds.mask_path(ds.items[0][0])
    cv2.imwrite(str(target), np.zeros((10, 12), np.uint8))
    with pytest.raises(DataError, match="expected the same size") as info:
        ds[0]
    assert str(target) in str(info.value)
