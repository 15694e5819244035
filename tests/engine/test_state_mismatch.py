"""Weights that do not fit: a short message saying which settings and keys differ (issue 26)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcvae.engine.checkpoint import (
    CheckpointError,
    config_differences,
    describe_state_mismatch,
    load_checkpoint,
    load_model_state,
    model_from_checkpoint,
)
from tests.api.conftest import write_tiny_checkpoint
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict:
    return load_checkpoint(write_tiny_checkpoint(tmp_path_factory.mktemp("c") / "h.pt"))


def _state(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return {k.replace("__", "."): torch.zeros(s) for k, s in shapes.items()}


def test_counts_and_a_few_examples_per_kind() -> None:
    expected = _state(a__w=(2,), b__w=(3,), c__w=(4,), d__w=(5,), e__w=(6, 2), f__w=(1,))
    found = _state(e__w=(7, 2), f__w=(1,), x__w=(1,))
    text = describe_state_mismatch(expected, found, examples=2)
    assert text == (
        "4 missing keys, e.g. a.w, b.w, ...; 1 unexpected: x.w; 1 of another shape: e.w (6, 2) "
        "vs the checkpoint's (7, 2)"
    )
    assert describe_state_mismatch(found, found) == "the weights match"


def test_settings_first_then_keys() -> None:
    stored = tiny_config("hybrid").to_dict()
    cfg = tiny_config("hybrid")
    cfg.model.arch = "prob_unet"
    cfg.model.latent_channels = 6
    assert config_differences(cfg, stored) == [
        ("model.arch", "prob_unet", "sohn"),
        ("model.latent_channels", 6, stored["model"]["latent_channels"]),
    ]
    assert config_differences(cfg.to_dict(), stored, ("data",)) == []
    text = describe_state_mismatch(_state(a=(1,)), _state(b=(1,)), config=cfg, stored_config=stored)
    assert text.startswith("model.arch prob_unet vs the checkpoint's sohn; model.latent_channels 6")
    assert text.endswith("1 missing key: a; 1 unexpected: b")
    same = describe_state_mismatch(
        _state(a=(1,)), _state(b=(1,)), config=stored, stored_config=stored
    )
    assert same.startswith("same model settings (a checkpoint of another segcvae version?)")


def test_a_wrong_override_is_a_short_message(ckpt: dict) -> None:
    """Before: one line of ~13 KB listing every missing key."""
    with pytest.raises(CheckpointError) as info:
        model_from_checkpoint(ckpt, "cpu", ["model.arch=prob_unet"])
    message = str(info.value)
    assert len(message) < 1000 and "\n" not in message
    assert message.startswith(
        "the checkpoint's weights do not fit the model its config describes with overrides "
        "['model.arch=prob_unet']: model.arch prob_unet vs the checkpoint's sohn; "
    )
    n_missing = sum(1 for k in message.split("; ") if k.endswith("...") and "missing keys" in k)
    assert n_missing == 1 and "unexpected, e.g. baseline." in message
    with pytest.raises(CheckpointError, match=r"model.latent_channels 8 vs the checkpoint's 4; "):
        model_from_checkpoint(ckpt, "cpu", ["model.latent_channels=8"])
    model, _ = model_from_checkpoint(ckpt, "cpu", [])  # no override: it fits
    assert not model.training


def test_load_model_state_for_other_callers(ckpt: dict) -> None:
    """The resume path can use it as it is: the message starts with the caller's words."""
    model, cfg = model_from_checkpoint(ckpt, "cpu")
    state = dict(ckpt["model"])
    dropped = sorted(state)[:5]
    for k in dropped:
        del state[k]
    with pytest.raises(CheckpointError) as info:
        load_model_state(model, state, "runs/x/last.pt", config=cfg, stored_config=ckpt["config"])
    assert str(info.value) == (
        "runs/x/last.pt: same model settings (a checkpoint of another segcvae version?); "
        f"5 missing keys, e.g. {', '.join([k for k in model.state_dict() if k in dropped][:3])}, ..."
    )
    load_model_state(model, ckpt["model"], "fine")  # fits: nothing raised


def test_the_evaluate_command_shows_it_in_one_line(tmp_path: Path, capsys) -> None:
    from segcvae.cli import evaluate_main

    path = write_tiny_checkpoint(tmp_path / "h.pt")
    assert evaluate_main(["--ckpt", str(path), "model.arch=ssn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 1000
    assert "model.arch ssn vs the checkpoint's sohn" in err
