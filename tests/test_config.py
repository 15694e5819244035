"""Config loading, overrides and errors."""

from __future__ import annotations

import pytest

from segcvae.config import Config, ConfigError


def test_overrides_and_yaml_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1e-3\nmodel:\n  encoder_weights: null\n")
    cfg = Config.from_yaml(p, ["train.steps=7", "--loss.alpha=0.25", "data.cub_classes=[1, 2]"])
    assert cfg.train.lr == 1e-3 and cfg.train.steps == 7 and cfg.loss.alpha == 0.25
    assert cfg.data.cub_classes == [1, 2]


def test_round_trip_through_plain_data():
    cfg = Config.from_yaml(None, ["model.latent=global"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr'.*valid keys: steps, batch_size, lr"):
        Config.from_yaml(None, ["train.lrr=1"])


def test_unknown_section():
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        Config.from_dict({"optim": {}})


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps=ten", "train.steps: expected an integer"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("data.hflip=3", "data.hflip: expected true or false"),
        ("model.decoder_channels=16", "model.decoder_channels: expected"),
    ],
)
def test_wrong_types(override, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_yaml(None, [override])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Config.from_yaml(tmp_path / "nope.yaml")


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        Config.from_yaml(None, ["steps=3"])


@pytest.mark.parametrize(
    "override, valid",
    [
        ("loss.objective=hybird", "cnn, cvae, gsnn, hybrid"),
        ("model.latent=globl", "spatial, global"),
        ("train.amp=fp8", "none, bf16, fp16"),
        ("data.name=lfww", "shapes, lfw, cub, folder"),
        ("data.on_bad_sample=ignore", "error, skip"),
    ],
)
def test_choice_keys_are_checked_at_load(override, valid):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"{key}: expected one of {valid}"):
        Config.from_yaml(None, [override])
