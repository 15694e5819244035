"""A dataset's own settings (``data.<dataset>.<key>``): checked when the config loads, one error
line and exit status 2 from the commands; the flat keys of before keep loading, checkpoints too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segcvae.cli import USAGE_ERROR, main
from segcvae.config import LEGACY_DATA_KEYS, Config, ConfigError
from segcvae.data import build_dataset, dataset_names, get_dataset
from segcvae.data.registry import dataset_settings
from segcvae.engine.checkpoint import load_checkpoint, save_checkpoint
from tests.tools.conftest import TINY

BAD = [
    (["data.shapes.train_size=0"], "data.shapes.train_size: expected an integer >= 1, got 0"),
    (["data.shapes.difficulty=2"], "data.shapes.difficulty: expected a number in [0, 1], got 2.0"),
    (["data.shapes.ambiguity=flip", "data.shapes.classes=1"], "data.shapes.classes: expected >= 2"),
    (["data.shapes.sizee=3"], "data.shapes: unknown key 'sizee'; valid keys: train_size"),
    (["data.shapes.seed=one"], "data.shapes.seed: expected an integer, got 'one'"),
    (["data.qubiq.task=2"], "data.qubiq: the dataset 'qubiq' has no settings of its own"),
    (["data.shapes_val_size=0"], "data.shapes.val_size: expected an integer >= 1, got 0"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_setting_out_of_range_is_one_line_and_exit_2(overrides, message, tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), *TINY, *overrides])
    err = capsys.readouterr().err
    assert code == USAGE_ERROR
    assert message in err and "Traceback" not in err


def test_every_dataset_is_registered_and_declares_its_settings_next_to_its_code() -> None:
    assert dataset_names()[:6] == ["shapes", "lfw", "cub", "folder", "qubiq", "lesions"]
    for name in dataset_names():
        cls, settings = get_dataset(name), dataset_settings(name)
        assert settings is None or settings.__module__ == cls.__module__ or name == "qubiq"
    assert dataset_settings("qubiq") is None


def test_settings_live_under_their_dataset_and_reach_the_data() -> None:
    cfg = Config.from_yaml(None, ["data.shapes.val_size=5", "data.shapes.ambiguity=flip"])
    assert cfg.data.shapes.val_size == 5 and cfg.data.settings().ambiguity == "flip"
    assert len(build_dataset(cfg.data, "val")) == 5
    written = cfg.to_dict()["data"]
    assert written["shapes"]["val_size"] == 5 and "shapes_val_size" not in written
    assert "lfw" not in written  # only the settings in use are written
    assert Config.from_dict(cfg.to_dict()) == cfg  # round trip


def test_base_and_override_merge_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("data: {name: shapes, shapes: {val_size: 4, seed: 2}}\n")
    (tmp_path / "exp.yaml").write_text("_base_: base.yaml\ndata: {shapes: {classes: 2}}\n")
    cfg = Config.from_yaml(tmp_path / "exp.yaml", ["data.shapes.completions=2"])
    s = cfg.data.shapes
    assert (s.val_size, s.seed, s.classes, s.completions) == (4, 2, 2, 2)


def test_flat_keys_of_before_are_read_as_the_dataset_settings(tmp_path: Path) -> None:
    flat = Config.from_dict({"data": {"name": "folder", "folder_classes": ["a", "b"]}})
    assert flat.data.folder.classes == ["a", "b"]
    (tmp_path / "old.yaml").write_text("data: {shapes_val_size: 7, binary_threshold: 128}\n")
    cfg = Config.from_yaml(tmp_path / "old.yaml", ["data.shapes_seed=3"])
    assert (cfg.data.shapes.val_size, cfg.data.shapes.seed) == (7, 3)
    assert cfg.data.folder.binary_threshold == 128
    nested = Config.from_yaml(None, ["data.shapes.val_size=7", "data.shapes.seed=3"])
    assert cfg.data.shapes == nested.data.shapes
    with pytest.raises(ConfigError, match="disagree"):
        Config.from_dict({"data": {"shapes_seed": 3, "shapes": {"seed": 4}}})
    assert set(LEGACY_DATA_KEYS) >= {"shapes_train_size", "lfw_flips", "folder_layout"}


def test_a_checkpoint_config_with_flat_keys_builds_the_same_dataset(tmp_path: Path) -> None:
    """A checkpoint written before 2026-12-08 stores every dataset's settings as flat keys."""
    cfg = Config.from_yaml(None, ["data.shapes.val_size=6", "data.shapes.ambiguity=mixed"])
    stored = cfg.to_dict()
    own = stored["data"].pop("shapes")
    stored["data"].update({f"shapes_{k}": v for k, v in own.items()})  # the old layout
    stored["data"].update(lfw_flips={}, cub_classes=None, folder_layout="pairs", nifti_axis=2)
    meta = {"num_classes": 4, "class_names": list("abcd"), "palette": [[0, 0, 0]] * 4}
    save_checkpoint(
        tmp_path / "old.pt", model=torch.nn.Linear(1, 1), step=1, config=stored, meta=meta
    )
    old = Config.from_dict(load_checkpoint(tmp_path / "old.pt")["config"], "checkpoint config")
    assert old.data.shapes == cfg.data.shapes
    a, b = build_dataset(old.data, "val"), build_dataset(cfg.data, "val")
    assert len(a) == len(b) == 6
    assert all(np.array_equal(a[i]["image"], b[i]["image"]) for i in range(len(a)))
