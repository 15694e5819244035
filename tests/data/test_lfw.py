"""LFW Part Labels on the real copy (labels extracted once per session) and its bad inputs."""

import logging
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from segcvae.data import DataError, LFWPartsDataset, build_dataset, build_transforms
from segcvae.data.files import colours_to_index, read_mask


def test_official_split_sizes(lfw_cfg):
    splits = {s: build_dataset(lfw_cfg, s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 1500, "val": 500, "test": 927}
    ids = [set(d.ids) for d in splits.values()]
    assert len(set.union(*ids)) == 2927  # disjoint
    assert "Dianne_Feinstein_0002" in splits["val"].ids  # listed unpadded as "Dianne_Feinstein 2"


def test_class_frequencies_match_the_release(lfw_cfg):
    counts = np.zeros(3)
    for split in ("train", "val", "test"):
        ds = build_dataset(lfw_cfg, split)
        for item_id in ds.ids:
            path = ds.mask_path(item_id)
            counts += np.bincount(
                colours_to_index(read_mask(path), ds.palette, path).ravel(), minlength=3
            )
    freq = counts / counts.sum()
    # measured on all 2,927 masks: background 68.3%, skin 21.5%, hair 10.2%
    assert freq == pytest.approx([0.68, 0.22, 0.10], abs=0.01)


def test_loaded_pair(lfw_cfg):
    ds = build_dataset(lfw_cfg, "val")
    item = ds[0]
    assert item["id"] == "Dianne_Feinstein_0002"
    assert item["image"].shape == (250, 250, 3) and item["image"].dtype == np.uint8
    assert item["mask"].shape == (250, 250) and item["mask"].dtype == np.int64
    assert set(np.unique(item["mask"])) == {0, 1, 2}
    assert ds.num_classes == 3 and ds.class_names == ["background", "skin", "hair"]


def test_transformed_item_at_128(lfw_cfg):
    ds = build_dataset(lfw_cfg, "train", build_transforms(lfw_cfg, "train"))
    item = ds[3]
    assert item["image"].shape == (3, 128, 128) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (128, 128) and item["mask"].dtype == torch.int64
    assert set(item["mask"].unique().tolist()) <= {0, 1, 2}


def test_packed_labels_give_the_tar_command(lfw_root):
    with pytest.raises(DataError, match=r"tar xzf .*parts_lfw_funneled_gt_images\.tgz"):
        LFWPartsDataset(lfw_root, "train")


def test_missing_split_file(tiny_lfw):
    (tiny_lfw / "parts_test.txt").unlink()
    with pytest.raises(DataError, match="parts_test.txt"):
        LFWPartsDataset(tiny_lfw, "test")


def test_empty_split_and_malformed_line(tiny_lfw):
    (tiny_lfw / "parts_test.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no images"):
        LFWPartsDataset(tiny_lfw, "test")
    (tiny_lfw / "parts_test.txt").write_text("Dianne_Feinstein two\n")
    with pytest.raises(DataError, match="line 1"):
        LFWPartsDataset(tiny_lfw, "test")


def test_missing_image_folder(tiny_lfw, tmp_path):
    with pytest.raises(DataError, match="lfw_funneled"):
        LFWPartsDataset(tmp_path / "nowhere", "train")


def test_listed_but_missing_file(tiny_lfw, caplog):
    missing = tiny_lfw / "lfw_funneled" / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg"
    missing.unlink()
    with pytest.raises(DataError, match="Aaron_Peirsol_0002.jpg"):
        LFWPartsDataset(tiny_lfw, "train")
    with caplog.at_level(logging.WARNING):
        ds = LFWPartsDataset(tiny_lfw, "train", on_bad_sample="skip")
    assert ds.ids == ["Aaron_Peirsol_0001"]
    assert "1 of 2 items" in caplog.text


def _edit_label(tiny_lfw, item_id, edit):
    path = tiny_lfw / "parts_lfw_funneled_gt_images" / f"{item_id}.ppm"
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), edit(bgr))
    return path


def test_unknown_label_colour(tiny_lfw):
    def paint(bgr):
        bgr[10, 10] = (40, 200, 12)  # RGB (12, 200, 40)
        return bgr

    path = _edit_label(tiny_lfw, "AJ_Cook_0001", paint)
    with pytest.raises(DataError, match=r"\(12, 200, 40\)") as info:
        LFWPartsDataset(tiny_lfw, "val")[0]
    assert str(path) in str(info.value)


def test_colour_tolerance_option(tiny_lfw):
    def noisy_green(bgr):
        bgr[10, 10] = (3, 250, 4)
        return bgr

    _edit_label(tiny_lfw, "AJ_Cook_0001", noisy_green)
    with pytest.raises(DataError):
        LFWPartsDataset(tiny_lfw, "val")[0]
    assert LFWPartsDataset(tiny_lfw, "val", colour_tolerance=10)[0]["mask"][10, 10] == 1


def test_size_mismatch(tiny_lfw):
    path = _edit_label(tiny_lfw, "AJ_Cook_0001", lambda bgr: bgr[:100, :120])
    with pytest.raises(DataError, match="expected the same size") as info:
        LFWPartsDataset(tiny_lfw, "val")[0]
    assert str(path) in str(info.value) and "AJ_Cook_0001.jpg" in str(info.value)


def test_corrupt_and_truncated_images(tiny_lfw):
    image = tiny_lfw / "lfw_funneled" / "AJ_Cook" / "AJ_Cook_0001.jpg"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="AJ_Cook_0001.jpg: truncated"):
        LFWPartsDataset(tiny_lfw, "val")[0]
    image.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="AJ_Cook_0001.jpg: cannot decode"):
        LFWPartsDataset(tiny_lfw, "val")[0]


def test_skip_bad_sample_is_logged_and_counted(tiny_lfw, caplog):
    bad = tiny_lfw / "lfw_funneled" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    bad.write_bytes(b"garbage")
    ds = LFWPartsDataset(tiny_lfw, "train", on_bad_sample="skip")
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["id"] == "Aaron_Peirsol_0002"  # replaced by the next readable item
    assert ds.num_skipped == 1
    assert "Aaron_Peirsol_0001.jpg" in caplog.text and "1 skipped so far" in caplog.text
    bad2 = tiny_lfw / "lfw_funneled" / "Aaron_Peirsol" / "Aaron_Peirsol_0002.jpg"
    bad2.write_bytes(b"garbage")
    with pytest.raises(DataError, match="all 2 items are bad"):
        LFWPartsDataset(tiny_lfw, "train", on_bad_sample="skip")[1]


def test_config_path_to_labels(lfw_cfg):
    with pytest.raises(DataError, match="label folder not found"):
        build_dataset(replace(lfw_cfg, lfw_masks="/nonexistent/labels"), "train")
