"""Folder datasets: index or palette masks, list-file or seeded splits, and every bad input."""

import logging

import cv2
import numpy as np
import pytest

from segcvae.data import DataError, FolderDataset

PALETTE = [[0, 0, 0], [200, 30, 30], [30, 200, 30]]
CLASSES = ["background", "road", "tree"]


def _make(root, n=10, rgb=False, size=(24, 32)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        image = rng.integers(0, 255, size + (3,), np.uint8)
        labels = rng.integers(0, 3, size).astype(np.uint8)
        labels[0, 0] = 255 if not rgb else labels[0, 0]
        cv2.imwrite(str(root / "images" / f"im{k:02d}.jpg"), image)
        if rgb:
            colour = np.asarray(PALETTE, np.uint8)[labels]
            cv2.imwrite(str(root / "masks" / f"im{k:02d}.png"), colour[..., ::-1])
        else:
            cv2.imwrite(str(root / "masks" / f"im{k:02d}.png"), labels)
    return root


def test_index_masks_and_seeded_split(tmp_path):
    root = _make(tmp_path / "set")
    parts = {s: FolderDataset(root, s, class_names=CLASSES) for s in ("train", "val", "test")}
    stems = {s: [it[0] for it in d.items] for s, d in parts.items()}
    assert [len(stems[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    assert sorted(sum(stems.values(), [])) == [f"im{k:02d}" for k in range(10)]
    again = FolderDataset(root, "train", class_names=CLASSES)
    assert [it[0] for it in again.items] == stems["train"]
    other = [
        FolderDataset(root, "test", class_names=CLASSES, split_seed=s).items[0][0] for s in range(5)
    ]
    assert len(set(other)) > 1
    item = parts["train"][0]
    written = cv2.imread(str(root / "masks" / f"{item['id']}.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(item["mask"], written.astype(np.int64))
    assert item["mask"][0, 0] == 255  # the ignore value passes through
    assert parts["train"].num_classes == 3 and len(parts["train"].palette) == 3


def test_palette_masks(tmp_path):
    root = _make(tmp_path / "set", rgb=True)
    ds = FolderDataset(root, "train", palette=PALETTE, class_names=CLASSES)
    item = ds[0]
    colour = cv2.imread(str(root / "masks" / f"{item['id']}.png"))[..., ::-1]
    assert np.array_equal(np.asarray(PALETTE)[item["mask"]], colour)
    assert ds.palette == [tuple(c) for c in PALETTE]


def test_split_list_files(tmp_path):
    root = _make(tmp_path / "set")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im00\nim01.jpg\n\n# comment\nim02\n")
    ds = FolderDataset(root, "train", class_names=CLASSES, splits_dir="splits")
    assert [it[0] for it in ds.items] == ["im00", "im01", "im02"]
    with pytest.raises(DataError, match=r"split file not found: .*val\.txt"):
        FolderDataset(root, "val", class_names=CLASSES, splits_dir="splits")
    (root / "splits" / "test.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no items"):
        FolderDataset(root, "test", class_names=CLASSES, splits_dir="splits")


def test_image_without_mask(tmp_path, caplog):
    root = _make(tmp_path / "set", n=5)
    (root / "masks" / "im03.png").unlink()
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im02\nim03\n")
    with pytest.raises(DataError, match=r"mask for im03\.jpg"):
        FolderDataset(root, "train", class_names=CLASSES, splits_dir="splits")
    with caplog.at_level(logging.WARNING):
        ds = FolderDataset(
            root, "train", class_names=CLASSES, splits_dir="splits", on_bad_sample="skip"
        )
    assert [it[0] for it in ds.items] == ["im02"] and "1 of 2 items" in caplog.text


def test_bad_mask_values_colours_and_sizes(tmp_path):
    root = _make(tmp_path / "set", n=4)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im00\n")
    cv2.imwrite(str(root / "masks" / "im00.png"), np.full((24, 32), 7, np.uint8))
    ds = FolderDataset(root, "train", class_names=CLASSES, splits_dir="splits")
    with pytest.raises(DataError, match=r"im00\.png: class values \[7\] out of range"):
        ds[0]
    cv2.imwrite(str(root / "masks" / "im00.png"), np.zeros((24, 32, 3), np.uint8) + 9)
    ds = FolderDataset(root, "train", palette=PALETTE, splits_dir="splits")
    with pytest.raises(DataError, match=r"im00\.png: .*\(9, 9, 9\)"):
        ds[0]
    cv2.imwrite(str(root / "masks" / "im00.png"), np.zeros((20, 32), np.uint8))
    ds = FolderDataset(root, "train", class_names=CLASSES, splits_dir="splits")
    with pytest.raises(DataError, match=r"im00\.png: mask is 32x20 .*im00\.jpg is 32x24"):
        ds[0]


def test_missing_folder_empty_split_and_no_classes(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        FolderDataset(tmp_path, "train", class_names=CLASSES)
    root = _make(tmp_path / "set", n=2)
    with pytest.raises(DataError, match="non-empty train split"):
        FolderDataset(root, "train", class_names=CLASSES)
    with pytest.raises(ValueError, match="folder.classes"):
        FolderDataset(root, "train")
    with pytest.raises(ValueError, match="one colour per class"):
        FolderDataset(root, "train", palette=PALETTE, class_names=["a", "b"])
