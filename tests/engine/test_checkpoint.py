"""Checkpoints: plain data (weights_only), atomic writes, RNG round trip, refusal of NaN weights."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segcvae.config import TrainConfig
from segcvae.engine.checkpoint import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from segcvae.engine.trainer import build_optimizer, build_scheduler


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _trained(model: nn.Module) -> tuple[torch.optim.Optimizer, object]:
    opt = build_optimizer(model, TrainConfig(lr=1e-2))
    sched = build_scheduler(opt, 1e-3)
    for _ in range(3):
        loss = model(torch.randn(2, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return opt, sched


def test_checkpoint_loads_with_weights_only_and_round_trips(tmp_path: Path) -> None:
    model = _model()
    opt, sched = _trained(model)
    path = tmp_path / "last.pt"
    meta = {"num_classes": 2, "class_names": ["a", "b"], "palette": [(0, 0, 0), (255, 0, 0)]}
    save_checkpoint(
        path,
        model=model,
        step=3,
        config={"train": {"lr": 0.01}},
        meta=meta,
        optimizer=opt,
        scheduler=sched,
        best_metric=0.5,
    )
    raw = torch.load(path, weights_only=True)  # must not need any allow-listed class
    assert raw["step"] == 3 and raw["best_metric"] == 0.5
    assert raw["meta"]["palette"] == [[0, 0, 0], [255, 0, 0]]
    data = load_checkpoint(path)
    fresh = _model()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    fresh.load_state_dict(data["model"])
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = build_optimizer(fresh, TrainConfig(lr=1e-2))
    sched2 = build_scheduler(opt2, 1e-3)
    opt2.load_state_dict(data["optimizer"])
    sched2.load_state_dict(data["scheduler"])
    assert sched2.last_epoch == 3
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-2 / (1 + 1e-3 * 3))


def test_rng_state_round_trip() -> None:
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    state = capture_rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_refuses_non_finite_weights(tmp_path: Path) -> None:
    model = _model()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "x.pt", model=model, step=0, config={}, meta={})
    assert not (tmp_path / "x.pt").exists()


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"v": torch.tensor([1.0])}, path)

    def broken_save(obj, fh, *a, **k):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"v": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["v"].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a segcvae checkpoint"):
        load_checkpoint(other)


def test_inference_checkpoint_holds_only_what_inference_needs(tmp_path: Path) -> None:
    model = _model()
    opt, sched = _trained(model)
    common = dict(model=model, step=3, config={"train": {}}, meta={"num_classes": 2})
    save_checkpoint(tmp_path / "last.pt", **common, optimizer=opt, scheduler=sched)
    save_checkpoint(
        tmp_path / "best.pt", **common, optimizer=opt, scheduler=sched, inference_only=True
    )
    best = load_checkpoint(tmp_path / "best.pt")
    assert (
        best["kind"] == "inference" and load_checkpoint(tmp_path / "last.pt")["kind"] == "training"
    )
    assert set(best) == {
        "format",
        "kind",
        "model",
        "step",
        "best_metric",
        "select",
        "config",
        "meta",
    }
    assert (tmp_path / "best.pt").stat().st_size < (tmp_path / "last.pt").stat().st_size


def test_non_finite_weights_are_refused_on_load(tmp_path: Path) -> None:
    model = _model()
    save_checkpoint(tmp_path / "ok.pt", model=model, step=1, config={}, meta={})
    data = torch.load(tmp_path / "ok.pt", weights_only=True)
    data["model"]["3.bias"] = torch.tensor([float("inf"), 0.0])
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt: 1 of \d+ weight tensors hold NaN or inf"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_text_file_is_not_a_pytorch_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("epoch 3: loss 0.1\n")
    with pytest.raises(CheckpointError, match="a.txt is not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "a.txt")
    save_checkpoint(tmp_path / "x.pt", model=_model(), step=1, config={}, meta={})
    data = (tmp_path / "x.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt is not a PyTorch checkpoint .*truncated"):
        load_checkpoint(tmp_path / "cut.pt")


def test_weights_only_rejects_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "step": 0, "config": {}, "meta": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_a_checkpoint_from_before_a_key_existed_loads_as_the_model_it_is(tmp_path: Path) -> None:
    """model.head_channels (default 16) and train.fused_adam (default true) came on 2026-12-05: a
    checkpoint without them was written by a generation net as wide as hidden_channels and by the
    multi-tensor Adam."""
    from segcvae.config import apply_overrides
    from segcvae.engine.checkpoint import model_from_checkpoint
    from segcvae.models import create_model
    from tests.conftest import tiny_config

    cfg = tiny_config("cvae", "categorical")
    cfg.model.generation = "full"
    cfg.model.hidden_channels = cfg.model.head_channels = 8
    model = create_model(cfg, 3)
    stored = cfg.to_dict()
    del stored["model"]["head_channels"], stored["train"]["fused_adam"]  # as written before
    path = tmp_path / "old.pt"
    save_checkpoint(path, model=model, step=1, config=stored, meta={"num_classes": 3})
    rebuilt, rebuilt_cfg = model_from_checkpoint(load_checkpoint(path))
    assert rebuilt_cfg.model.head_channels == 8 and rebuilt_cfg.train.fused_adam is False
    assert rebuilt.generation_net.head[1].in_channels == 8
    # a checkpoint that states the keys keeps its values
    new = apply_overrides(cfg.to_dict(), ["model.head_channels=4"])
    save_checkpoint(path, model=model, step=1, config=new, meta={"num_classes": 3})
    assert load_checkpoint(path)["config"]["model"]["head_channels"] == 4


def test_unfinished_saves_finds_what_a_save_stopped_before_its_rename_leaves(
    tmp_path: Path, monkeypatch
) -> None:
    from segcvae.engine import checkpoint

    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)
    assert checkpoint.unfinished_saves(path) == []  # a finished save leaves nothing
    monkeypatch.setattr(checkpoint.os, "replace", lambda src, dst: None)  # killed before it
    atomic_save({"step": 2}, path)
    (left,) = checkpoint.unfinished_saves(path)
    assert torch.load(left, weights_only=True) == {"step": 2}
    assert torch.load(path, weights_only=True) == {"step": 1}  # the previous one, whole
    assert checkpoint.unfinished_saves(tmp_path / "best.pt") == []
