"""The trainer's parts alone: the divergence guard, the checkpointer's selection, the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from segcvae.config import Config, ConfigError
from segcvae.engine.checkpoint import load_checkpoint
from segcvae.engine.hook_checkpoints import Checkpointer
from segcvae.engine.hook_divergence import DivergenceError, DivergenceGuard, NonFiniteLossError
from segcvae.engine.run_dir import (
    RunDirError,
    make_run_dir,
    remove_unfinished_run,
)


def test_the_guard_skips_non_finite_steps_and_stops_after_too_many(tmp_path: Path) -> None:
    guard = DivergenceGuard(3, tmp_path / "last.pt", "Try less.")
    assert guard.check_loss(True, 2.0, 1) is None and guard.loss_reference == 2.0
    assert "non-finite loss" in guard.check_loss(False, float("nan"), 2)
    assert guard.check_loss(True, 1.0, 3) is None and guard.bad_in_row == 0  # a good step resets
    guard.check_loss(False, float("inf"), 4)
    guard.check_loss(False, float("inf"), 5)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written.*Try less"):
        guard.check_loss(False, float("nan"), 6)
    assert guard.skipped == 4


def test_the_guard_counts_exploding_losses_but_applies_their_updates(tmp_path: Path) -> None:
    guard = DivergenceGuard(2, tmp_path / "last.pt")
    guard.check_loss(True, 1.0, 1)
    guard.last_saved_step = 1
    assert guard.check_loss(True, 500.0, 2) is None and guard.exploding  # over 100 x the first
    model = nn.Linear(2, 2)
    assert not guard.healthy(model)  # no checkpoint while exploding
    with pytest.raises(DivergenceError, match="ended at step 2 with the loss exploding"):
        guard.check_health(model, 2, final=True)
    with pytest.raises(DivergenceError, match=r"step 3: .* from step 1"):
        guard.check_loss(True, 900.0, 3)


def test_the_guard_finds_bad_weights(tmp_path: Path) -> None:
    guard = DivergenceGuard(2, tmp_path / "last.pt")
    model = nn.Linear(2, 2)
    assert guard.healthy(model)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert not guard.healthy(model)
    with pytest.raises(DivergenceError, match="weight holds NaN"):
        guard.check_health(model, 5, final=False)


def _checkpointer(tmp_path: Path, select: str) -> Checkpointer:
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    return Checkpointer(
        tmp_path,
        model=model,
        optimizer=opt,
        scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        config=Config().to_dict(),
        meta={"num_classes": 2, "class_names": ["a", "b"], "palette": [[0, 0, 0], [1, 1, 1]]},
        select=select,
    )


@pytest.mark.parametrize(
    "select, values, best_step",
    [
        ("mean_iou", [0.5, 0.7, 0.6, float("nan")], 2),  # higher is better, NaN never wins
        ("ged", [0.3, 0.2, 0.25, 0.4], 2),  # lower is better
        ("nll", [90.0, 80.0, 70.0, 75.0], 3),
    ],
)
def test_best_pt_is_chosen_by_the_select_metric(tmp_path, select, values, best_step) -> None:
    ckpt = _checkpointer(tmp_path, select)
    written = [ckpt.update_best(step, {select: v}) for step, v in enumerate(values, start=1)]
    assert written[0] and written[best_step - 1] and not any(written[best_step:])
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == best_step and best["select"] == select
    assert best["best_metric"] == pytest.approx(values[best_step - 1])
    assert not ckpt.update_best(9, {"other": 0.0})  # a record without the metric changes nothing


def test_resuming_keeps_the_best_value_of_the_same_metric_only(tmp_path: Path) -> None:
    ckpt = _checkpointer(tmp_path, "ged")
    ckpt.update_best(1, {"ged": 0.2})
    ckpt.save_last(1)
    again = _checkpointer(tmp_path, "ged")
    again.load(tmp_path / "last.pt")
    assert again.best == pytest.approx(0.2) and not again.is_better(0.3)
    other = _checkpointer(tmp_path, "mean_iou")
    other.load(tmp_path / "last.pt")
    assert other.best is None  # a ged value is no mean IoU


def test_select_is_checked_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match="train.select: expected a validation metric"):
        Config.from_yaml(None, ["train.select=accuracy"])
    with pytest.raises(ConfigError, match="eval.hypotheses.*train.select=ged"):
        Config.from_yaml(None, ["train.select=ged", "eval.hypotheses=0"])
    with pytest.raises(ConfigError, match="eval.samples.*train.select=nll"):
        Config.from_yaml(None, ["train.select=nll", "eval.samples=0"])
    assert Config.from_yaml(None, ["train.select=ged"]).train.select == "ged"


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match=r"--out .*file/run: cannot create .*file is a file"):
        make_run_dir(tmp_path / "file" / "run")
    with pytest.raises(RunDirError, match="/proc"):
        make_run_dir(Path("/proc/segcvae_run"))


def test_an_unfinished_run_leaves_nothing_but_what_was_there(tmp_path: Path) -> None:
    run = tmp_path / "new"
    assert make_run_dir(run)
    (run / "config.yaml").write_text("")
    remove_unfinished_run(run, created=True)
    assert not run.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert not make_run_dir(kept)
    (kept / "config.yaml").write_text("")
    remove_unfinished_run(kept, created=False)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_resuming_into_another_model_is_a_short_error(tmp_path: Path) -> None:
    from segcvae.engine.checkpoint import CheckpointError

    _checkpointer(tmp_path, "mean_iou").save_last(1)
    other = _checkpointer(tmp_path, "mean_iou")
    other.model = nn.Linear(3, 2)  # the configured model differs from the one saved
    with pytest.raises(CheckpointError, match="last.pt: the weights do not fit") as info:
        other.load(tmp_path / "last.pt")
    assert len(str(info.value)) < 700


def test_adam_is_fused_where_torch_has_the_kernel_and_multi_tensor_otherwise(monkeypatch) -> None:
    from segcvae.config import TrainConfig
    from segcvae.engine.optim import build_optimizer

    model = nn.Linear(3, 2)
    assert build_optimizer(model, TrainConfig(fused_adam=False)).defaults["fused"] in (None, False)
    real = torch.optim.Adam
    try:  # torch >= 2.4 has a fused CPU kernel; an older torch gets the multi-tensor Adam
        real([nn.Parameter(torch.zeros(1))], fused=True)
        has_kernel = True
    except RuntimeError:
        has_kernel = False
    assert bool(build_optimizer(model, TrainConfig()).defaults["fused"]) == has_kernel

    def no_fused_kernel(params, **kw):
        if kw.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", no_fused_kernel)
    fallback = build_optimizer(model, TrainConfig())
    assert isinstance(fallback, real) and not fallback.defaults["fused"]
    # the two take the same step (up to rounding)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    monkeypatch.setattr(torch.optim, "Adam", real)
    for net, fused_adam in ((a, True), (b, False)):
        opt = build_optimizer(net, TrainConfig(lr=0.1, fused_adam=fused_adam))
        net(torch.ones(1, 3)).sum().backward()
        opt.step()
    torch.testing.assert_close(a.weight, b.weight)
