"""A family's own settings (``model.<family>.<key>``): checked when the config loads, one error line
and exit status 2 from the commands; settings written before as flat keys keep loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcvae.cli import USAGE_ERROR, main
from segcvae.config import Config, ConfigError
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from segcvae.models import SSN, ProbUNet, create_model
from tests.conftest import tiny_config
from tests.tools.conftest import TINY

# (overrides, the error line's text): each used to end in a traceback (issue 31)
BAD = [
    (["model.arch=ssn", "model.ssn.rank=0"], "model.ssn.rank: expected an integer >= 1, got 0"),
    (
        ["model.arch=ssn", "model.ssn.mc_samples=0"],
        "model.ssn.mc_samples: expected an integer >= 1",
    ),
    (["model.arch=ssn", "model.ssn.epsilon=0"], "model.ssn.epsilon: expected a number > 0, got 0"),
    (
        ["model.arch=prob_unet", "model.prob_unet.latent_dim=0"],
        "model.prob_unet.latent_dim: expected an integer >= 1, got 0",
    ),
    (["model.head_channels=0"], "model.head_channels: expected an integer >= 1, got 0"),
    (["model.ssn.rnak=3"], "model.ssn: unknown key 'rnak'; valid keys: rank, mc_samples"),
    (["model.ssn.rank=ten"], "model.ssn.rank: expected an integer, got 'ten'"),
    (["model.cnn.width=3"], "model.cnn: the family 'cnn' has no settings of its own"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_a_setting_out_of_range_is_one_line_and_exit_2(overrides, message, tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), *TINY, *overrides])
    err = capsys.readouterr().err
    assert code == USAGE_ERROR
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_settings_live_under_their_family_and_reach_the_model() -> None:
    cfg = Config.from_yaml(None, ["model.arch=ssn", "model.ssn.rank=3"])
    assert cfg.model.ssn.rank == 3 and cfg.model.settings().rank == 3
    assert cfg.to_dict()["model"]["ssn"] == {"rank": 3, "mc_samples": 20, "epsilon": 1e-5}
    assert "ssn_rank" not in cfg.to_dict()["model"]
    assert Config.from_dict(cfg.to_dict()).model.ssn.rank == 3  # round trip
    assert Config().to_dict()["model"].get("ssn") is None  # only the settings in use are written


def test_base_and_override_merge_key_by_key(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("model: {arch: ssn, ssn: {rank: 4, mc_samples: 6}}\n")
    (tmp_path / "exp.yaml").write_text("_base_: base.yaml\nmodel: {ssn: {rank: 5}}\n")
    cfg = Config.from_yaml(tmp_path / "exp.yaml", ["model.ssn.epsilon=0.01"])
    assert (cfg.model.ssn.rank, cfg.model.ssn.mc_samples, cfg.model.ssn.epsilon) == (5, 6, 0.01)


def test_flat_keys_of_before_are_read_as_the_family_settings() -> None:
    cfg = Config.from_dict({"model": {"arch": "prob_unet", "prob_unet_latent_dim": 3}})
    assert cfg.model.prob_unet.latent_dim == 3
    with pytest.raises(ConfigError, match="disagree"):
        Config.from_dict({"model": {"ssn_rank": 3, "ssn": {"rank": 4}}})


@pytest.mark.parametrize(
    "arch,cls,old",
    [("ssn", SSN, {"ssn_rank": 3}), ("prob_unet", ProbUNet, {"prob_unet_latent_dim": 2})],
)
def test_a_checkpoint_written_before_loads_as_the_model_it_is(arch, cls, old, tmp_path) -> None:
    """A checkpoint whose config has the flat keys (as written before 2026-12-07) rebuilds the
    same model with the same weights and predictions."""
    cfg = tiny_config()
    cfg.model.arch = arch
    (family, key), value = next((k, v) for k, v in _nested(old).items())
    setattr(cfg.model.settings(family), key, value)
    torch.manual_seed(0)
    model = create_model(cfg, 3).eval()
    stored = cfg.to_dict()
    stored["model"].pop(family)
    stored["model"].update(old)  # the old layout
    meta = {"num_classes": 3, "class_names": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3}
    save_checkpoint(tmp_path / "old.pt", model=model, step=1, config=stored, meta=meta)
    rebuilt, cfg2 = model_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))
    assert type(rebuilt) is cls and getattr(cfg2.model.settings(), key) == value
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(rebuilt.predict(x), model.predict(x))


def _nested(old: dict) -> dict:
    from segcvae.config import LEGACY_FAMILY_KEYS

    return {LEGACY_FAMILY_KEYS[k]: v for k, v in old.items()}
