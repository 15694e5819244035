"""k-fold cross-validation splits: disjoint, covering, seeded, volumes kept whole."""

from __future__ import annotations

import pytest

from segcvae.config import Config, ConfigError
from segcvae.data import build_dataset
from segcvae.data.folds import fold_groups
from tests.tools.conftest import TINY


def test_the_folds_test_every_group_once_and_never_overlap() -> None:
    groups = [f"g{i}" for i in range(23)]
    tested = []
    for fold in range(5):
        parts = fold_groups(groups, 5, fold, seed=3, val_ratio=0.2)
        train, val, test = parts["train"], parts["val"], parts["test"]
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(groups)
        assert len(val) == round(0.2 * (len(groups) - len(test)) + 0.49)  # ceil
        tested += test
    assert sorted(tested) == sorted(groups)  # each group is tested exactly once


def test_the_deal_is_seeded() -> None:
    groups = [f"g{i}" for i in range(12)]
    assert fold_groups(groups, 3, 0, 1, 0.2) == fold_groups(groups, 3, 0, 1, 0.2)
    assert fold_groups(groups, 3, 0, 1, 0.2)["test"] != fold_groups(groups, 3, 0, 2, 0.2)["test"]
    with pytest.raises(ValueError, match="cannot be dealt into 13 folds"):
        fold_groups(groups, 13, 0, 0, 0.2)


def test_a_fold_of_the_embedded_data_pools_its_splits() -> None:
    overrides = [*TINY, "data.cv_folds=3", "data.cv_seed=0"]
    seen = []
    for fold in range(3):
        cfg = Config.from_yaml(None, [*overrides, f"data.cv_fold={fold}"])
        splits = {s: build_dataset(cfg.data, s) for s in ("train", "val", "test")}
        ids = {s: {d.load(i).id for i in range(len(d))} for s, d in splits.items()}
        assert sum(len(v) for v in ids.values()) == 16 + 4 + 4  # shapes' train, val and test
        assert not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
        assert splits["test"].masks_are_modes  # what the source says, forwarded
        item = splits["train"][0]
        assert item["masks"].shape[0] == 3
        seen += ids["test"]
    assert len(seen) == len(set(seen)) == 24


def test_slices_of_a_volume_stay_in_one_fold(tmp_path) -> None:
    from segcvae.data.folds import item_group

    class Volumes:
        split = "train"

        def item_group(self, index: int) -> str:
            return ["a:z000", "a:z001", "b:z000"][index].split(":")[0]

    assert [item_group(Volumes(), i) for i in range(3)] == ["a", "a", "b"]

    class Plain:
        split = "val"

    assert item_group(Plain(), 4) == "val:4"


def test_fold_keys_are_checked() -> None:
    with pytest.raises(ConfigError, match="data.cv_folds: expected 0 .* or a number of folds"):
        Config.from_yaml(None, ["data.cv_folds=1"])
    with pytest.raises(ConfigError, match=r"data.cv_fold: expected 0 .. 4"):
        Config.from_yaml(None, ["data.cv_folds=5", "data.cv_fold=5"])
    with pytest.raises(ConfigError, match="data.cv_val_ratio"):
        Config.from_yaml(None, ["data.cv_folds=5", "data.cv_val_ratio=0"])
