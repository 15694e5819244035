"""LFW Part Labels on the real copy (labels extracted once per session) and its bad inputs."""

import logging
import os
import shutil
import tarfile
import tempfile

import cv2
import numpy as np
import pytest
import torch

from segcvae.config import Config, ConfigError
from segcvae.data import DataError, LFWPartsDataset, build_dataset, build_transforms
from segcvae.data.files import colours_to_index, read_mask
from segcvae.data.lfw import CACHE_ENV
from tests.conftest import data_replace


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
        build_dataset(data_replace(lfw_cfg, lfw_masks="/nonexistent/labels"), "train")


# --- flipped classes (data.lfw.flips): Kohl et al. 2018's recipe on the real masks (issue 33)

FLIPS = {"hair": 8 / 17, "skin": 5 / 17}  # the recipe's first probability and its fourth


@pytest.fixture(scope="module")
def flip_cfg(lfw_cfg):
    return data_replace(lfw_cfg, lfw={"flips": dict(FLIPS)})


def test_flipped_item_modes_and_probabilities_by_hand(lfw_cfg, flip_cfg):
    ds = build_dataset(flip_cfg, "val")
    assert ds.class_names == ["background", "skin", "hair", "skin_alt", "hair_alt"]
    assert ds.num_classes == 5 and len(ds.palette) == 5 and len(set(ds.palette)) == 5
    assert ds.masks_are_modes
    item = ds[0]
    labels = build_dataset(lfw_cfg, "val")[0]["mask"]  # Dianne_Feinstein_0002 as labelled
    assert item["id"] == "Dianne_Feinstein_0002" and {0, 1, 2} <= set(np.unique(labels))
    skin, hair = labels == 1, labels == 2
    # the flipped classes in class order (skin, then hair); mode 0 = the labels as they are
    by_hand = [
        (labels, (12 / 17) * (9 / 17)),  # nothing flipped: 108/289
        (np.where(hair, 4, labels), (12 / 17) * (8 / 17)),  # hair -> hair_alt: 96/289
        (np.where(skin, 3, labels), (5 / 17) * (9 / 17)),  # skin -> skin_alt: 45/289
        (np.where(skin, 3, np.where(hair, 4, labels)), (5 / 17) * (8 / 17)),  # both: 40/289
    ]
    assert item["masks"].shape == (4, 250, 250) and item["masks"].dtype == np.int64
    for mode, (mask, _) in zip(item["masks"], by_hand, strict=True):
        np.testing.assert_array_equal(mode, mask)
    assert item["mask_probs"].dtype == np.float32
    np.testing.assert_allclose(item["mask_probs"], [p for _, p in by_hand], rtol=1e-6)
    np.testing.assert_allclose(item["mask_probs"] * 289, [108, 96, 45, 40], rtol=1e-5)
    assert item["mask_probs"].sum() == pytest.approx(1.0, abs=1e-6)
    assert any(np.array_equal(item["mask"], m) for m in item["masks"])
    again = build_dataset(flip_cfg, "val")[0]  # the drawn mask is seeded by (split, index)
    np.testing.assert_array_equal(again["mask"], item["mask"])


def test_an_image_without_hair_keeps_its_identical_modes(flip_cfg):
    ds = build_dataset(flip_cfg, "val")
    index = ds.ids.index("Michael_Jordan_0001")  # one of the 116 masks without hair pixels
    masks = ds[index]["masks"]
    assert masks.shape[0] == 4 and not (masks == 2).any() and not (masks == 4).any()
    np.testing.assert_array_equal(masks[0], masks[1])  # hair kept / flipped: the same mask
    np.testing.assert_array_equal(masks[2], masks[3])
    assert not np.array_equal(masks[0], masks[2])  # skin flipped or not differs


def test_drawn_masks_follow_the_probabilities(flip_cfg):
    """Over the 1,500 training items each class flips at its rate, the pair independently."""
    ds = build_dataset(flip_cfg, "train")
    flipped = {"skin": [], "hair": []}
    joint = np.zeros(4)
    for index in range(len(ds)):
        sample = ds.load(index)
        skin, hair = (sample.masks[0] == 1).any(), (sample.masks[0] == 2).any()
        if skin:
            flipped["skin"].append((sample.mask == 3).any())
        if hair:
            flipped["hair"].append((sample.mask == 4).any())
        if skin and hair:
            joint[2 * flipped["skin"][-1] + flipped["hair"][-1]] += 1
    assert len(flipped["skin"]) == 1500 and len(flipped["hair"]) > 1400
    # binomial standard deviations: 0.012 (skin), 0.013 (hair), <= 0.013 per joint mode
    assert np.mean(flipped["skin"]) == pytest.approx(5 / 17, abs=0.035)
    assert np.mean(flipped["hair"]) == pytest.approx(8 / 17, abs=0.04)
    np.testing.assert_allclose(joint / joint.sum(), ds.mode_probs, atol=0.04)


def test_transformed_flipped_item(flip_cfg):
    cfg = data_replace(flip_cfg, image_size=64)
    item = build_dataset(cfg, "train", build_transforms(cfg, "train"))[0]
    assert item["masks"].shape == (4, 64, 64) and item["masks"].dtype == torch.int64
    assert item["mask"].shape == (64, 64) and item["mask_probs"].shape == (4,)
    assert set(item["masks"].unique().tolist()) <= {0, 1, 2, 3, 4}


def test_flips_off_leave_the_items_unchanged(lfw_cfg, flip_cfg):
    plain, flipped = build_dataset(lfw_cfg, "val"), build_dataset(flip_cfg, "val")
    assert lfw_cfg.lfw.flips == {}  # the default
    assert plain.class_names == ["background", "skin", "hair"] and not plain.masks_are_modes
    assert plain.palette == [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    for index in (0, 9, 100):
        item = plain[index]
        assert "mask_probs" not in item and item["masks"].shape == (1, 250, 250)
        path = plain.mask_path(item["id"])
        labels = colours_to_index(read_mask(path), plain.palette, path)
        np.testing.assert_array_equal(item["mask"], labels)
        np.testing.assert_array_equal(item["masks"][0], labels)
        np.testing.assert_array_equal(flipped[index]["masks"][0], labels)  # mode 0: as labelled


def test_one_flipped_class_and_the_mapping_order(lfw_cfg):
    hair_only = build_dataset(data_replace(lfw_cfg, lfw={"flips": {"hair": 0.25}}), "test")
    assert hair_only.class_names[3:] == ["hair_alt"] and hair_only.num_classes == 4
    np.testing.assert_allclose(hair_only.mode_probs, [0.75, 0.25])
    item = hair_only[0]
    assert item["masks"].shape[0] == 2 and set(np.unique(item["masks"][1])) <= {0, 1, 3}
    reordered = build_dataset(
        data_replace(lfw_cfg, lfw={"flips": {"skin": 5 / 17, "hair": 8 / 17}}), "test"
    )
    swapped = build_dataset(
        data_replace(lfw_cfg, lfw={"flips": {"hair": 8 / 17, "skin": 5 / 17}}), "test"
    )
    assert reordered.class_names == swapped.class_names  # classes follow class order
    np.testing.assert_array_equal(reordered[5]["masks"], swapped[5]["masks"])


@pytest.mark.parametrize(
    "flips", [{"beard": 0.5}, {"hair": 0.0}, {"hair": 1.0}, {"skin": 1.5}, {"hair": float("nan")}]
)
def test_bad_flips_are_config_errors(lfw_cfg, flips):
    with pytest.raises(ConfigError, match=r"data\.lfw\.flips"):
        Config.from_dict({"data": {"name": "lfw", "root": "x", "lfw_flips": flips}})
    with pytest.raises(ConfigError, match=r"data\.lfw\.flips"):
        build_dataset(data_replace(lfw_cfg, lfw={"flips": flips}), "val")
