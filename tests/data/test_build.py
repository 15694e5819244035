"""build_dataset: the registry, its errors, and the dataset attributes."""

import pytest

from segcvae.config import Config, ConfigError, DataConfig
from segcvae.data import DataError, ShapesDataset, build_dataset


def test_default_config_builds_the_embedded_shapes():
    cfg = Config.from_yaml(None).data
    ds = build_dataset(cfg, "val")
    assert isinstance(ds, ShapesDataset) and len(ds) == cfg.shapes.val_size
    assert ds.num_classes == cfg.shapes.classes + 1
    assert len(ds.class_names) == len(ds.palette) == ds.num_classes
    assert ds[0]["masks"].shape[0] == cfg.shapes.completions


def test_errors_name_what_is_wrong():
    with pytest.raises(ConfigError, match="data.name: expected one of shapes, lfw, cub, folder"):
        build_dataset(DataConfig(name="voc"), "train")
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        build_dataset(DataConfig(), "validation")
    with pytest.raises(DataError, match="data.root is empty"):
        build_dataset(DataConfig(name="lfw"), "train")
    with pytest.raises(ValueError, match="on_bad_sample"):
        build_dataset(DataConfig(name="folder", root="x", on_bad_sample="ignore"), "train")
    with pytest.raises(ValueError, match="ignore_index"):
        build_dataset(DataConfig(ignore_index=-100), "train")


def test_overrides_reach_the_dataset():
    cfg = Config.from_yaml(None, ["data.shapes.completions=2", "data.image_size=96"]).data
    item = build_dataset(cfg, "train")[0]
    assert item["masks"].shape == (2, 96, 96)
