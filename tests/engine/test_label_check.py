"""The look at the training masks before training: 0/255 masks, absent classes, mostly ignored."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from segcvae.config import DataConfig
from segcvae.data import DataError, Sample
from segcvae.engine.checks import check_labels, scan_labels
from tests.conftest import data_cfg


class _Masks:
    """A dataset of given masks (the ``load`` / ``class_names`` part of SegmentationDataset)."""

    def __init__(self, masks, class_names=("background", "foreground"), on_bad_sample="error"):
        self.masks = masks
        self.class_names = list(class_names)
        self.on_bad_sample = on_bad_sample
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return len(self.masks)

    def load(self, index: int) -> Sample:
        self.loaded.append(index)
        if self.masks[index] is None:
            raise DataError(f"item {index}: unreadable")
        return Sample(
            np.zeros((*self.masks[index].shape, 3), np.uint8), self.masks[index], str(index)
        )


def _mask(values: dict[int, int], size: int = 10) -> np.ndarray:
    flat = np.concatenate([np.full(n, v, np.uint8) for v, n in values.items()])
    return np.resize(flat, (size, size))


def test_binary_0_255_masks_are_an_error_naming_the_key():
    ds = _Masks([_mask({0: 80, 255: 20})] * 5)
    cfg = data_cfg(name="folder", root="/data/cells", folder_classes=["background", "cell"])
    with pytest.raises(DataError) as info:
        check_labels(ds, cfg)
    text = str(info.value)
    assert text.startswith("data.name=folder, data.root=/data/cells: class 1 (foreground)")
    assert "never occurs in the 5 training masks read" in text and "20.0%" in text
    assert "data.folder.binary_threshold=128" in text


def test_the_scan_is_capped_and_says_so(caplog):
    ds = _Masks([_mask({0: 50, 1: 50})] * 1000)
    with caplog.at_level(logging.INFO, logger="segcvae"):
        counts = check_labels(ds, DataConfig(), max_items=40)
    assert counts is not None and counts.items == 40 and len(ds.loaded) == 40
    assert ds.loaded[0] == 0 and ds.loaded[-1] == 999  # spread over the split
    assert "40 of the 1000 training masks" in caplog.text and "at most 40" in caplog.text
    assert "background 50.0%, foreground 50.0%" in caplog.text


def test_an_absent_class_without_ignored_pixels_is_a_warning(caplog):
    ds = _Masks([_mask({0: 60, 2: 40})] * 3, class_names=("bg", "road", "tree"))
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        check_labels(ds, DataConfig())
    assert "class 1 (road) never occurs" in caplog.text and "IoU will be 0 if" in caplog.text


def test_mostly_ignored_pixels_are_a_warning(caplog):
    ds = _Masks([_mask({0: 20, 1: 20, 255: 60})] * 3)
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        check_labels(ds, DataConfig())
    assert "60.0% of the pixels" in caplog.text and "data.ignore_index" in caplog.text


def test_healthy_masks_pass_quietly(caplog):
    ds = _Masks([_mask({0: 70, 1: 25, 255: 5})] * 3)
    with caplog.at_level(logging.WARNING, logger="segcvae"):
        counts = check_labels(ds, DataConfig())
    assert caplog.text == "" and counts.ignored == 15 and counts.per_class.tolist() == [210, 75]


def test_an_ignore_index_that_is_a_class_hides_it():
    counts = scan_labels(_Masks([_mask({0: 50, 1: 50})]), 2, ignore_index=1, max_items=10)
    assert counts.per_class.tolist() == [50, 0] and counts.ignored == 50


def test_bad_items_follow_the_bad_sample_policy():
    masks = [_mask({0: 50, 1: 50}), None, _mask({0: 50, 1: 50})]
    with pytest.raises(DataError, match="item 1"):
        scan_labels(_Masks(masks), 2, 255, 10)
    assert scan_labels(_Masks(masks, on_bad_sample="skip"), 2, 255, 10).items == 2
