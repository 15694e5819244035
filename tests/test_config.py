"""Config loading, overrides and errors."""

from __future__ import annotations

import pytest

from segcvae.config import Config, ConfigError


def test_overrides_and_yaml_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 1e-3\nmodel:\n  encoder_weights: null\n")
    cfg = Config.from_yaml(p, ["train.steps=7", "--loss.alpha=0.25", "data.cub.classes=[1, 2]"])
    assert cfg.train.lr == 1e-3 and cfg.train.steps == 7 and cfg.loss.alpha == 0.25
    assert cfg.data.cub.classes == [1, 2]


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


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=-1", r"train.lr: expected a number > 0, got -1.0"),
        ("train.lr=.nan", r"train.lr: expected a number > 0"),
        ("train.steps=0", r"train.steps: expected an integer >= 1, got 0"),
        ("train.batch_size=0", r"train.batch_size: expected an integer >= 1, got 0"),
        ("data.image_size=0", r"data.image_size: expected a positive integer, got 0"),
        ("data.image_size=100", r"data.image_size: expected a multiple of 32 .*e.g. 96, got 100"),
        ("eval.samples=-3", r"eval.samples: expected an integer >= 0"),
        ("eval.hypotheses=-1", r"eval.hypotheses: expected an integer >= 0"),
        ("loss.alpha=1.5", r"loss.alpha: expected a number in \[0, 1\], got 1.5"),
        ("model.latent_stride=12", r"model.latent_stride: expected one of 4, 8, 16, 32"),
        ("model.decoder_channels=[8,8]", r"model.decoder_channels: expected 5 positive"),
        ("data.ignore_index=300", r"data.ignore_index: expected an integer in 0..255"),
        ("train.device=gpu", r"train.device: expected auto, cpu, cuda, cuda:N or mps"),
        ("data.omission_max=2", r"data.omission_max: expected a number in \[0, 1\]"),
        ("data.name=folder", r"data.folder.classes: expected class names"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_range(override, message):
    with pytest.raises(ConfigError, match=f"^command line: {message}"):
        Config.from_yaml(None, [override])


def test_image_size_follows_the_encoder_depth():
    assert (
        Config.from_yaml(
            None,
            ["model.encoder_depth=4", "model.decoder_channels=[8,8,8,8]", "data.image_size=48"],
        ).data.image_size
        == 48
    )
    with pytest.raises(ConfigError, match="multiple of 16"):
        Config.from_yaml(
            None,
            [
                "model.encoder_depth=4",
                "model.decoder_channels=[8,8,8,8]",
                "model.latent_stride=8",
                "data.image_size=40",
            ],
        )


def test_validate_catches_a_config_changed_in_code():
    cfg = Config()
    cfg.validate()
    cfg.train.lr = 0.0
    with pytest.raises(ConfigError, match="train.lr"):
        cfg.validate()


def test_base_is_merged_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.01\n  steps: 5\nloss:\n  alpha: 0.2\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  steps: 9\n")
    cfg = Config.from_yaml(tmp_path / "child.yaml", ["train.batch_size=2"])
    assert (cfg.train.lr, cfg.train.steps, cfg.train.batch_size, cfg.loss.alpha) == (
        0.01,
        9,
        2,
        0.2,
    )


def test_base_errors_name_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lrr: 0.01\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base.yaml: train: unknown key 'lrr'"):
        Config.from_yaml(tmp_path / "child.yaml")
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.01\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nmodel:\n  depth: 3\n")
    with pytest.raises(ConfigError, match=r"child.yaml: model: unknown key 'depth'"):
        Config.from_yaml(tmp_path / "child.yaml")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  lr: -2\n")
    with pytest.raises(ConfigError, match=r"child.yaml \(bases base.yaml\): train.lr: expected"):
        Config.from_yaml(tmp_path / "child.yaml")
    (tmp_path / "child.yaml").write_text("_base_: nope.yaml\n")
    with pytest.raises(ConfigError, match=r"child.yaml: _base_: base config not found: .*nope"):
        Config.from_yaml(tmp_path / "child.yaml")


def test_a_list_of_bases_is_merged_in_order_and_may_not_contradict_itself(tmp_path):
    (tmp_path / "data.yaml").write_text("data:\n  image_size: 32\neval:\n  samples: 3\n")
    (tmp_path / "sched.yaml").write_text("train:\n  steps: 7\n  lr: 0.01\n")
    (tmp_path / "exp.yaml").write_text("_base_: [data.yaml, sched.yaml]\ntrain:\n  lr: 0.02\n")
    cfg = Config.from_yaml(tmp_path / "exp.yaml")
    assert (cfg.data.image_size, cfg.eval.samples, cfg.train.steps, cfg.train.lr) == (
        32,
        3,
        7,
        0.02,  # the experiment overrides its bases
    )
    (tmp_path / "same.yaml").write_text("train:\n  steps: 7\n")  # agrees with sched.yaml: fine
    (tmp_path / "exp.yaml").write_text("_base_: [sched.yaml, same.yaml]\n")
    assert Config.from_yaml(tmp_path / "exp.yaml").train.steps == 7
    (tmp_path / "other.yaml").write_text("train:\n  steps: 9\n")
    (tmp_path / "exp.yaml").write_text("_base_: [sched.yaml, other.yaml]\n")
    with pytest.raises(
        ConfigError, match=r"train.steps is set by both .*sched.yaml \(7\) and .*other"
    ):
        Config.from_yaml(tmp_path / "exp.yaml")
    (tmp_path / "exp.yaml").write_text("_base_: [sched.yaml, 3]\n")
    with pytest.raises(ConfigError, match="a file name or a list of file names"):
        Config.from_yaml(tmp_path / "exp.yaml")


def test_a_base_with_a_base_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  lr: 0.01\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    (tmp_path / "c.yaml").write_text("_base_: b.yaml\n")
    with pytest.raises(ConfigError, match=r"c.yaml: _base_: .*b.yaml has a _base_ of its own"):
        Config.from_yaml(tmp_path / "c.yaml")


def test_base_is_relative_to_the_yaml_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text("train:\n  steps: 3\n")
    (tmp_path / "sub" / "child.yaml").write_text("_base_: base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert Config.from_yaml("sub/child.yaml").train.steps == 3


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        Config.from_yaml(tmp_path / "bad.yaml")


def test_network_defaults_are_the_config_defaults():
    """One source of defaults: the sub-networks' keyword defaults are the config's (the families'
    constructors are checked in tests/models/test_registry.py)."""
    import inspect
    from dataclasses import asdict

    from segcvae.config import LossConfig, ModelConfig
    from segcvae.losses import CategoricalObjective, SohnObjective
    from segcvae.models import GenerationNet, LatentNet

    checked = 0
    for cls, section in (
        (LatentNet, ModelConfig()),
        (GenerationNet, ModelConfig()),
        (SohnObjective, LossConfig()),
        (CategoricalObjective, LossConfig()),
    ):
        defaults = asdict(section)
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name in defaults and param.default is not inspect.Parameter.empty:
                value = list(param.default) if isinstance(param.default, tuple) else param.default
                assert value == defaults[name], f"{cls.__name__}({name}=...)"
                checked += 1
    assert checked >= 10


def test_a_folder_as_config(tmp_path):
    with pytest.raises(ConfigError, match="is a folder; expected a YAML file"):
        Config.from_yaml(tmp_path)


def test_errors_say_where_the_value_came_from(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"^\S+c.yaml: train.lr: expected a number > 0"):
        Config.from_yaml(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"^\S+c.yaml \+ command line: train.steps: expected"):
        Config.from_yaml(tmp_path / "c.yaml", ["train.lr=1", "train.steps=0"])
