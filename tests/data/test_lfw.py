"""LFW Part Labels on the real copy (labels extracted once per session) and its bad inputs."""

import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from segcvae.data import DataError, LFWPartsDataset, build_dataset, build_transforms
from segcvae.data.files import colours_to_index, read_mask
from segcvae.data.lfw import CACHE_ENV


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


def test_packed_labels_are_read_from_the_read_only_archive(lfw_root, tmp_path, monkeypatch, caplog):
    """The shared copy is read-only and holds only the .tgz: it is extracted once into a cache."""
    assert not lfw_root.stat().st_mode & 0o222  # marked read-only: the case this test is about
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(CACHE_ENV, raising=False)
    with caplog.at_level(logging.INFO, logger="segcvae"):
        ds = LFWPartsDataset(lfw_root, "val")
    assert ds.masks_dir.is_relative_to(tmp_path / "cache" / "segcvae")
    assert str(ds.masks_dir) in caplog.text and "extracting" in caplog.text
    assert len(ds) == 500 and set(np.unique(ds[0]["mask"])) == {0, 1, 2}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="segcvae"):
        again = LFWPartsDataset(lfw_root, "test")  # reuses the extraction
    assert again.masks_dir == ds.masks_dir and "extracting" not in caplog.text
    assert not (lfw_root / ".segcvae_cache").exists()  # nothing written beside the data


def _packed(tiny_lfw):
    """tiny_lfw with its labels packed as the official archive (and the folder removed)."""
    folder = tiny_lfw / "parts_lfw_funneled_gt_images"
    with tarfile.open(tiny_lfw / "parts_lfw_funneled_gt_images.tgz", "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    shutil.rmtree(folder)
    return tiny_lfw


def test_cache_falls_back_when_home_and_root_are_read_only(tiny_lfw, tmp_path, monkeypatch):
    root = _packed(tiny_lfw)
    not_a_folder = tmp_path / "home_cache"
    not_a_folder.write_text("")  # mkdir inside it fails, even for root
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    root.chmod(0o555)
    try:
        ds = LFWPartsDataset(root, "train")
    finally:
        root.chmod(0o755)
    assert not (root / ".segcvae_cache").exists()
    assert ds.masks_dir.is_relative_to(tmp_path / "tmp") and len(ds) == 2
    assert ds[0]["mask"].shape == (250, 250)


def test_writable_root_is_used_when_the_home_cache_is_not(tiny_lfw, tmp_path, monkeypatch):
    root = _packed(tiny_lfw)
    (tmp_path / "home_cache").write_text("")
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    ds = LFWPartsDataset(root, "val")
    assert ds.masks_dir.is_relative_to(root / ".segcvae_cache") and len(ds) == 1


def test_cache_env_variable_and_changed_archive(tiny_lfw, tmp_path, monkeypatch):
    root = _packed(tiny_lfw)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    first = LFWPartsDataset(root, "train").masks_dir
    assert first.is_relative_to(tmp_path / "c")
    archive = root / "parts_lfw_funneled_gt_images.tgz"
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    second = LFWPartsDataset(root, "train").masks_dir
    assert second != first and second.is_dir()  # a changed archive is extracted again
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no leftovers


def test_an_archive_without_the_label_folder(tiny_lfw, tmp_path, monkeypatch):
    (tiny_lfw / "other").mkdir()
    with tarfile.open(tiny_lfw / "parts_lfw_funneled_gt_images.tgz", "w:gz") as tar:
        tar.add(tiny_lfw / "other", arcname="other")
    shutil.rmtree(tiny_lfw / "parts_lfw_funneled_gt_images")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    with pytest.raises(DataError, match="holds no parts_lfw_funneled_gt_images/ folder"):
        LFWPartsDataset(tiny_lfw, "train")


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
