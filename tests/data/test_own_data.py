"""Own data as it comes: split folders, unmatched item folders, rescaled masks, skip counts,
split files checked before training."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcvae.config import Config, ConfigError, DataConfig
from segcvae.config.checks import check_type as _check_type
from segcvae.data import DataError, FolderDataset, Sample, SegmentationDataset, build_dataset
from segcvae.data.folder import check_split_files
from segcvae.engine.batches import eval_loader
from segcvae.engine.checks import check_labels, check_splits
from tests.conftest import data_cfg

CLASSES = ["background", "object"]


def _pairs(root: Path, n: int, size=(12, 16), mask_scale: float = 1.0, start: int = 0) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for k in range(start, start + n):
        image = np.random.default_rng(k).integers(0, 255, (*size, 3), np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[2:8, 3 : 5 + k % 4] = 1
        if mask_scale != 1.0:
            mask = cv2.resize(
                mask, None, fx=mask_scale, fy=mask_scale, interpolation=cv2.INTER_NEAREST
            )
        cv2.imwrite(str(root / "images" / f"im{k:02d}.png"), image)
        cv2.imwrite(str(root / "masks" / f"im{k:02d}.png"), mask)
    return root


def _ids(ds: FolderDataset) -> list[str]:
    return [it[0] for it in ds.items]


# ------------------------------------------------------------------ per_image: unmatched folders
def test_unmatched_item_folders_are_counted_with_an_example(tmp_path: Path, caplog) -> None:
    root = tmp_path / "set"
    for k in range(4):
        case = root / f"case{k}"
        case.mkdir(parents=True)
        name = "image.png" if k == 0 else "img.png"  # three folders name their image otherwise
        cv2.imwrite(str(case / name), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(case / "seg1.png"), np.zeros((8, 8), np.uint8))
    (root / "splits").mkdir()  # a split folder is not an item folder: not counted
    with pytest.raises(DataError) as e:
        FolderDataset(root, "train", class_names=CLASSES, layout="per_image")
    message = str(e.value)
    assert "1 items cannot be split" in message
    assert "of the 4 folders in" in message and "1 hold a file matching" in message
    assert "3 do not (e.g. case1/ holds img.png, seg1.png)" in message
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        ds = FolderDataset(
            root, "train", class_names=CLASSES, layout="per_image", val_ratio=0, test_ratio=0
        )
    assert _ids(ds) == ["case0"] and "skipping 3 of the 4 folders" in caplog.text
    only_other = FolderDataset(
        root, "train", class_names=CLASSES, layout="per_image", image_pattern="img.*",
        val_ratio=0, test_ratio=0,
    )  # fmt: skip
    assert _ids(only_other) == ["case1", "case2", "case3"]


def test_data_split_into_folders_is_pointed_at_split_dirs(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for split in ("training", "testing"):
        for k in range(3):
            case = root / split / f"case{k}"
            case.mkdir(parents=True)
            cv2.imwrite(str(case / "image.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="set data.folder.split_dirs") as e:
        FolderDataset(root, "train", class_names=CLASSES, layout="per_image")
    assert "testing/ holds case0/, case1/, case2/" in str(e.value)
    assert "testing/, training/ hold folders" in str(e.value)


# ------------------------------------------------------------------ split folders
@pytest.mark.parametrize("layout", ["pairs", "per_image"])
def test_split_folders_with_val_carved_from_train(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "set"
    if layout == "pairs":
        _pairs(root / "training", 10)
        _pairs(root / "testing", 3, start=10)
    else:
        for split, ks in (("training", range(10)), ("testing", range(10, 13))):
            for k in ks:
                case = root / split / f"im{k:02d}"
                case.mkdir(parents=True)
                cv2.imwrite(str(case / "image.png"), np.zeros((8, 8, 3), np.uint8))
                cv2.imwrite(str(case / "task_seg1.png"), np.ones((8, 8), np.uint8))
    dirs = {"train": "training", "test": "testing"}
    kw = dict(class_names=CLASSES, layout=layout, split_dirs=dirs, split_seed=3)
    parts = {s: _ids(FolderDataset(root, s, **kw)) for s in ("train", "val", "test")}
    assert parts["test"] == ["im10", "im11", "im12"]  # the whole testing folder
    assert len(parts["val"]) == 1 and len(parts["train"]) == 9  # data.folder.val_ratio 0.1
    assert sorted(parts["train"] + parts["val"]) == [f"im{k:02d}" for k in range(10)]
    other_seed = [_ids(FolderDataset(root, "val", **{**kw, "split_seed": s})) for s in range(6)]
    assert len({tuple(v) for v in other_seed}) > 1  # the carve follows data.split_seed
    cfg = Config.from_yaml(
        None,
        [
            "data.name=folder",
            f"data.root={root}",
            f"data.folder.layout={layout}",
            "data.folder.classes=[background,object]",
            "data.split_seed=3",
            "data.folder.split_dirs={train: training, test: testing}",
        ],
    ).data
    assert [build_dataset(cfg, "val")[0]["id"]] == parts["val"]
    with pytest.raises(DataError, match=r"split folder not found: .*validation"):
        FolderDataset(root, "val", **{**kw, "split_dirs": {**dirs, "val": "validation"}})
    with pytest.raises(ConfigError, match="give one of them"):
        FolderDataset(root, "train", **kw, splits_dir="splits")


def test_split_dirs_config_key_is_checked() -> None:
    with pytest.raises(ConfigError, match="data.folder.split_dirs: expected a mapping of train"):
        Config.from_yaml(None, ["data.folder.split_dirs={test: testing}"])
    with pytest.raises(ConfigError, match="data.folder.split_dirs.train: expected a string"):
        Config.from_yaml(None, ["data.folder.split_dirs={train: 7}"])
    with pytest.raises(ConfigError, match="data.folder.split_dirs: expected a mapping of str"):
        Config.from_yaml(None, ["data.folder.split_dirs=[training]"])
    with pytest.raises(ConfigError, match="data.folder.splits"):
        Config.from_yaml(None, ["data.folder.split_dirs={train: a}", "data.folder.splits=splits"])
    cfg = Config.from_yaml(None, ["data.folder.split_dirs={train: a, val: b}"])
    assert Config.from_dict(cfg.to_dict()).data.folder.split_dirs == {"train": "a", "val": "b"}


def test_the_type_checker_reads_mappings() -> None:
    assert _check_type({"a": "1e-3", "b": 2}, dict[str, float], "k") == {"a": 1e-3, "b": 2.0}
    assert _check_type(None, dict[str, str] | None, "k") is None
    with pytest.raises(ConfigError, match=r"k \(key 3\): expected a string"):
        _check_type({3: "x"}, dict[str, str], "k")
    with pytest.raises(ConfigError, match=r"k.a: expected a number, got 'x'"):
        _check_type({"a": "x"}, dict[str, float], "k")
    with pytest.raises(ConfigError, match=r"k: expected a mapping of str to float"):
        _check_type("a=1", dict[str, float], "k")


# ------------------------------------------------------------------ rescaled masks
def test_rescaled_masks_are_counted_and_can_be_resized(tmp_path: Path, caplog) -> None:
    root = _pairs(tmp_path / "set", 5, mask_scale=2.0)
    _pairs(root, 1, start=5)  # one mask of the right size
    kw = dict(class_names=CLASSES, val_ratio=0, test_ratio=0)
    ds = FolderDataset(root, "train", **kw)
    with pytest.raises(DataError) as e:
        ds[0]
    message = str(e.value)
    assert "im00.png: mask is 32x24 (WxH) but its image" in message
    assert "5 of the 6 items of the train split have such masks" in message
    assert "data.folder.mask_resize=true" in message
    with caplog.at_level(logging.INFO, logger="segcvae"):
        resized = FolderDataset(root, "train", mask_resize=True, **kw)
    assert "data.folder.mask_resize: 5 of 6 items" in caplog.text
    stored = cv2.imread(str(root / "masks" / "im01.png"), cv2.IMREAD_UNCHANGED)
    expected = cv2.resize(stored, (16, 12), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(resized[1]["mask"], expected) and resized[1]["mask"].shape == (12, 16)


def test_one_odd_mask_is_not_offered_a_resize(tmp_path: Path) -> None:
    root = _pairs(tmp_path / "set", 5)
    _pairs(root, 1, mask_scale=2.0, start=5)
    ds = FolderDataset(root, "train", class_names=CLASSES, val_ratio=0, test_ratio=0)
    with pytest.raises(DataError) as e:
        ds[5]
    assert "im05.png: mask is 32x24" in str(e.value) and "mask_resize" not in str(e.value)


# ------------------------------------------------------------------ skipped items
class _Flaky(SegmentationDataset):
    """Items 1 and 3 of 5 are bad."""

    class_names = ["background", "object"]
    palette = [(0, 0, 0), (255, 255, 255)]

    def __len__(self) -> int:
        return 5

    def load(self, index: int) -> Sample:
        if index in (1, 3):
            raise DataError(f"item{index}.png: unreadable")
        return Sample(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), str(index))


def test_the_skip_count_is_of_distinct_items(caplog) -> None:
    ds = _Flaky("train", on_bad_sample="skip")
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        ids = [ds[i]["id"] for i in range(5)] + [ds[i]["id"] for i in range(5)]
    assert ids == ["0", "2", "2", "4", "4"] * 2
    assert ds.num_skipped == 2 and "2 skipped so far (distinct items, of 5)" in caplog.text
    assert caplog.text.count("skipping bad item") == 2


def test_dataloader_workers_share_the_skipped_items() -> None:
    ds = _Flaky("val", on_bad_sample="skip")
    for _ in range(2):  # two epochs: new workers each time
        ids = [i for batch in eval_loader(ds, 1, num_workers=2) for i in batch["id"]]
        assert ids == ["0", "2", "2", "4", "4"]
    assert ds.num_skipped == 2  # counted in the workers, seen here


# ------------------------------------------------------------------ split files, before training
def test_split_files_are_checked_when_training_starts(tmp_path: Path, caplog) -> None:
    root = tmp_path / "set"
    (root / "splits").mkdir(parents=True)
    (root / "splits" / "train.txt").write_text("a\n")
    cfg = data_cfg(name="folder", root=str(root), folder_splits="splits", folder_classes=CLASSES)
    with pytest.raises(DataError, match=r"split file not found: .*splits/val.txt; the run evalu"):
        check_split_files(cfg)
    (root / "splits" / "val.txt").write_text("a\n")
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        warnings = check_splits(cfg)
    assert len(warnings) == 1 and "splits/test.txt" in warnings[0]
    assert "evaluate --split test" in caplog.text
    with pytest.raises(DataError, match=r"test.txt; the run evaluates on \(eval.split\)"):
        check_split_files(cfg, eval_split="test")
    (root / "splits" / "train.txt").unlink()
    with pytest.raises(DataError, match=r"splits/train.txt; the run trains on the train split"):
        check_split_files(cfg)
    dirs = data_cfg(
        name="folder",
        root=str(root),
        folder_classes=CLASSES,
        folder_split_dirs={"train": "splits", "test": "testing"},
    )
    assert "data.folder.split_dirs.test" in check_split_files(dirs)[0]
    qubiq = data_cfg(name="qubiq", root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere/splits/train.txt"):
        check_split_files(qubiq)
    assert check_split_files(DataConfig()) == []  # shapes: nothing to check


# ------------------------------------------------------------------ the label check's wording
class _Raters:
    class_names = ["background", "object"]

    def __len__(self) -> int:
        return 2

    def load(self, index: int) -> Sample:
        masks = np.zeros((3, 4, 4), np.uint8)
        masks[index, 0, 0] = 1  # one rater of each item marks one pixel
        return Sample(np.zeros((4, 4, 3), np.uint8), masks[0], str(index), masks=masks)


def test_the_label_check_counts_items_and_masks(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="segcvae"):
        counts = check_labels(_Raters(), DataConfig())
    assert counts.items == 2 and counts.masks == 6 and counts.per_class[1] == 2
    assert "labels in the 6 masks of the 2 training items read" in caplog.text
    # item 1's object is marked by its second rater only: counted, so not reported absent
    assert "never occurs" not in caplog.text


def test_training_warns_about_a_missing_test_file_when_it_starts(tmp_path: Path, caplog) -> None:
    from segcvae.engine.distributed import DistInfo
    from segcvae.engine.trainer import Trainer
    from tests.tools.conftest import TINY

    root = _pairs(tmp_path / "set", 6)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("im00\nim01\nim02\nim03\n")
    (root / "splits" / "val.txt").write_text("im04\n")
    folder = ["data.name=folder", f"data.root={root}", "data.folder.splits=splits"]
    folder += ["data.folder.classes=[background,object]", "data.omission_max=0"]
    cfg = Config.from_yaml(None, [*TINY, *folder])
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        Trainer(cfg, tmp_path / "run", DistInfo(), progress=False)
    assert "split file not found" in caplog.text and "splits/test.txt" in caplog.text
