"""Several masks per image: folder layouts (per image, per rater), binary / JPEG masks, QUBIQ."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segcvae.config import ConfigError
from segcvae.data import DataError, FolderDataset, QUBIQDataset, build_dataset, build_transforms
from segcvae.engine.batches import collate
from tests.conftest import SHARED_DATA, data_cfg

SIZE = (12, 16)  # H, W


def _image(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(0, 255, SIZE + (3,), np.uint8)


def _rater_mask(k: int, rater: int) -> np.ndarray:
    m = np.zeros(SIZE, np.uint8)
    m[2 : 6 + rater, 3 : 8 + k % 3] = 1  # raters disagree on the lower edge
    return m


def _per_image(root: Path, raters: list[int], scale: int = 1, ext: str = ".png") -> Path:
    for k, r in enumerate(raters):
        case = root / f"case{k:02d}"
        case.mkdir(parents=True)
        cv2.imwrite(str(case / "image.png"), _image(k))
        for j in range(r):
            cv2.imwrite(str(case / f"task01_seg{j + 1:02d}{ext}"), _rater_mask(k, j) * scale)
    return root


def _per_rater(root: Path, raters: dict[str, list[int]]) -> Path:
    (root / "images").mkdir(parents=True)
    n = max(max(v) for v in raters.values()) + 1
    for k in range(n):
        cv2.imwrite(str(root / "images" / f"im{k}.jpg"), _image(k))
    for j, (name, items) in enumerate(sorted(raters.items())):
        (root / "masks" / name).mkdir(parents=True)
        for k in items:
            cv2.imwrite(str(root / "masks" / name / f"im{k}.png"), _rater_mask(k, j))
    return root


def _splits(root: Path, train: list[str], test: list[str]) -> None:
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "splits" / "test.txt").write_text("\n".join(test) + "\n")


def _folder(root: Path, split: str = "train", **kw) -> FolderDataset:
    kw.setdefault("class_names", ["background", "object"])
    return FolderDataset(root, split, splits_dir="splits", **kw)


def test_one_folder_per_image_with_any_number_of_raters(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [3, 1, 2])
    _splits(root, ["case00", "case01"], ["case02"])
    ds = _folder(root, layout="per_image", image_pattern="image.*", mask_pattern="*seg*")
    first, second = ds[0], ds[1]
    assert first["masks"].shape == (3, *SIZE) and second["masks"].shape == (1, *SIZE)
    assert all(np.array_equal(first["masks"][j], _rater_mask(0, j)) for j in range(3))
    # the reference mask is the majority vote: 2 of 3 raters
    votes = np.stack([_rater_mask(0, j) for j in range(3)]).sum(0)
    assert np.array_equal(first["mask"], (votes >= 2).astype(np.int64))
    assert np.array_equal(second["mask"], second["masks"][0])
    batch = collate([first, second], ignore_index=255)
    assert batch["num_masks"].tolist() == [3, 1] and (batch["masks"][1, 1:] == 255).all()
    with pytest.raises(DataError, match="no files|no mask files|matching"):
        _folder(root, layout="per_image", mask_pattern="*label*")


def test_one_mask_folder_per_rater(tmp_path: Path) -> None:
    root = _per_rater(tmp_path / "set", {"alice": [0, 1, 2], "bob": [0, 2], "carol": [0]})
    _splits(root, ["im0", "im1"], ["im2"])
    ds = _folder(root, layout="per_rater")
    assert [len(ds[i]["masks"]) for i in range(2)] == [3, 1]
    assert np.array_equal(ds[1]["masks"][0], _rater_mask(1, 0))  # alice, the only rater of im1
    test = _folder(root, "test", layout="per_rater")
    assert np.array_equal(test[0]["masks"][1], _rater_mask(2, 1))  # bob, in rater-name order
    with pytest.raises(DataError, match="folder.layout=per_rater"):
        _folder(root)  # masks/ holds rater folders, not masks: say which layout reads them


def test_the_pairs_layout_still_reads_one_mask_as_one_rater(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(3):
        cv2.imwrite(str(root / "images" / f"im{k}.png"), _image(k))
        cv2.imwrite(str(root / "masks" / f"im{k}.png"), _rater_mask(k, 0))
    _splits(root, ["im0", "im1"], ["im2"])
    item = _folder(root)[0]
    assert item["masks"].shape == (1, *SIZE) and np.array_equal(item["masks"][0], item["mask"])


def test_image_without_rater_mask_is_an_error_or_skipped(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [2, 0, 2])
    _splits(root, ["case00", "case01", "case02"], ["case02"])
    with pytest.raises(DataError, match=r"case01.*no rater mask for image.png"):
        _folder(root, layout="per_image")
    ds = _folder(root, layout="per_image", on_bad_sample="skip")
    assert [it[0] for it in ds.items] == ["case00", "case02"]


def test_rater_masks_of_different_sizes_name_the_file(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [2, 2])
    cv2.imwrite(str(root / "case01" / "task01_seg02.png"), np.zeros((5, 5), np.uint8))
    _splits(root, ["case00", "case01"], ["case00"])
    ds = _folder(root, layout="per_image")
    with pytest.raises(DataError, match=r"case01/task01_seg02.png: mask is 5x5"):
        ds[1]
    skipping = _folder(root, layout="per_image", on_bad_sample="skip")
    assert skipping[1]["id"] == "case00" and skipping.num_skipped == 1


def test_unknown_value_names_the_file(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [2, 2])
    bad = _rater_mask(1, 0)
    bad[0, 0] = 7
    cv2.imwrite(str(root / "case01" / "task01_seg01.png"), bad)
    _splits(root, ["case00", "case01"], ["case00"])
    with pytest.raises(DataError, match=r"case01/task01_seg01.png: class values \[7\]"):
        _folder(root, layout="per_image")[1]


def test_0_255_masks_need_the_binary_threshold(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [2, 1], scale=255)
    _splits(root, ["case00", "case01"], ["case01"])
    with pytest.raises(DataError) as e:
        _folder(root, layout="per_image")[0]
    message = str(e.value)
    assert "task01_seg01.png" in message and "[0, 255]" in message
    assert "data.folder.binary_threshold=128" in message
    ds = _folder(root, layout="per_image", binary_threshold=128)
    assert np.array_equal(ds[0]["masks"][1], _rater_mask(0, 1))
    default_names = FolderDataset(
        root, "train", splits_dir="splits", layout="per_image", binary_threshold=128
    )
    assert default_names.class_names == ["background", "foreground"]
    with pytest.raises(ConfigError, match="binary_threshold"):
        _folder(root, layout="per_image", binary_threshold=128, class_names=["a", "b", "c"])


def test_jpeg_masks_are_named_and_read_with_a_threshold(tmp_path: Path) -> None:
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(3):
        big = np.kron(_rater_mask(k, 1), np.ones((4, 4), np.uint8)) * 255
        cv2.imwrite(str(root / "masks" / f"im{k}.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 60])
        cv2.imwrite(str(root / "images" / f"im{k}.png"), cv2.resize(_image(k), big.shape[::-1]))
    _splits(root, ["im0", "im1"], ["im2"])
    noisy = cv2.imread(str(root / "masks" / "im0.jpg"), cv2.IMREAD_UNCHANGED)
    assert len(np.unique(noisy)) > 2  # compression noise around 0 and 255
    with pytest.raises(DataError) as e:
        _folder(root)
    assert "JPEG masks" in str(e.value) and "data.folder.binary_threshold" in str(e.value)
    mask = _folder(root, binary_threshold=128)[0]["mask"]
    expected = np.kron(_rater_mask(0, 1), np.ones((4, 4), np.uint8))
    assert set(np.unique(mask)) == {0, 1} and (mask != expected).mean() < 0.01


def test_transforms_move_every_rater_mask_with_the_image(tmp_path: Path) -> None:
    root = _per_image(tmp_path / "set", [7, 2])
    _splits(root, ["case00", "case01"], ["case01"])
    cfg = data_cfg(
        name="folder",
        root=str(root),
        folder_layout="per_image",
        folder_classes=["background", "object"],
        folder_splits="splits",
        image_size=32,
        omission_max=0.0,
    )
    ds = build_dataset(cfg, "train", build_transforms(cfg, "train"))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["masks"].shape == (7, 32, 32)
    assert item["masks"].dtype == torch.int64
    raw = build_dataset(cfg, "train")[0]["masks"]
    for j in range(7):  # the same resize (and flip, when drawn) for every rater
        resized = cv2.resize(raw[j].astype(np.uint8), (32, 32), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(item["masks"][j].numpy(), resized) or np.array_equal(
            item["masks"][j].numpy(), resized[:, ::-1]
        )
    flipped = [np.array_equal(item["masks"][j].numpy(), item["masks"][0].numpy()) for j in range(7)]
    assert not all(flipped)  # the raters really differ after the transform


QUBIQ = SHARED_DATA / "qubiq_brain_growth"


@pytest.mark.skipif(not QUBIQ.is_dir(), reason=f"QUBIQ brain growth not found at {QUBIQ}")
def test_qubiq_reads_the_real_release() -> None:
    sizes = {s: len(QUBIQDataset(QUBIQ, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 27, "val": 4, "test": 8}
    ds = QUBIQDataset(QUBIQ, "test")
    item = ds[0]
    assert item["image"].shape == (128, 128, 3) and item["masks"].shape == (7, 128, 128)
    assert np.array_equal(item["image"][..., 0], item["image"][..., 2])  # grayscale as RGB
    assert set(np.unique(item["masks"])) == {0, 1}
    votes = item["masks"].sum(0)
    assert np.array_equal(item["mask"], (votes >= 4).astype(np.int64))
    assert 0.02 < item["masks"].mean() < 0.4  # brain growth is a small part of the slice
    assert ds.class_names == ["background", "brain growth"] and item["id"] == "case32"
    cfg = data_cfg(name="qubiq", root=str(QUBIQ), image_size=64)
    t = build_dataset(cfg, "train", build_transforms(cfg, "train"))[3]
    assert t["masks"].shape == (7, 64, 64) and t["image"].shape == (3, 64, 64)
    with pytest.raises(DataError, match="QUBIQ root not found"):
        QUBIQDataset(QUBIQ / "missing", "train")
