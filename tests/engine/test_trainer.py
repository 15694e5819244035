"""The training loop: non-finite losses, the paper's LR decay, AMP fallback on CPU, seeding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcvae.config import Config
from segcvae.engine.checkpoint import load_checkpoint
from segcvae.engine.distributed import DistInfo
from segcvae.engine.trainer import NonFiniteLossError, Trainer, build_optimizer, build_scheduler
from tests.tools.conftest import TINY


def _trainer(tmp_path: Path, *overrides: str) -> Trainer:
    cfg = Config.from_yaml(
        None, [*TINY, "train.eval_every=0", "eval.samples=0", "eval.hypotheses=0", *overrides]
    )
    return Trainer(cfg, tmp_path, DistInfo(), progress=False)


class _NaNAt:
    """Wrap an objective so that its loss is NaN at the given (0-based) steps."""

    def __init__(self, objective, steps) -> None:
        self.objective = objective
        self.steps = steps

    def __call__(self, out, y, step):
        terms = self.objective(out, y, step)
        if step in self.steps:
            terms["loss"] = terms["loss"] * float("nan")
        return terms


def test_a_non_finite_loss_skips_the_step(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=3", "train.checkpoint_every=1")
    trainer.objective = _NaNAt(trainer.objective, {1})
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert summary["skipped_steps"] == 1 and summary["step"] == 3
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert any(
        not torch.equal(before[k], v) for k, v in ckpt["model"].items()
    )  # the other steps trained


def test_too_many_non_finite_losses_stop_with_a_clear_message(tmp_path: Path) -> None:
    trainer = _trainer(
        tmp_path, "train.steps=10", "train.max_bad_steps=3", "train.checkpoint_every=1"
    )
    trainer.objective = _NaNAt(trainer.objective, set(range(100)))
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "last.pt")  # what was saved is the untouched, finite model
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_paper_lr_decay() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    cfg = Config().train
    opt = build_optimizer(torch.nn.Linear(1, 1), cfg)
    assert isinstance(opt, torch.optim.Adam)
    opt = torch.optim.Adam([param], lr=3e-4)
    sched = build_scheduler(opt, 1e-3)
    for _ in range(500):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 / (1 + 1e-3 * 500))


def test_amp_and_channels_last_are_ignored_on_cpu(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=1", "train.amp=fp16", "train.channels_last=true")
    assert not trainer.amp_enabled and not trainer.scaler.is_enabled() and not trainer.channels_last
    assert trainer.fit()["step"] == 1


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    finals = []
    for i, seed in enumerate((0, 0, 1)):
        trainer = _trainer(tmp_path / str(i), "train.steps=2", f"train.seed={seed}")
        trainer.fit()
        finals.append(load_checkpoint(tmp_path / str(i) / "last.pt")["model"])
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert any(not torch.equal(finals[0][k], finals[2][k]) for k in finals[0])


def test_global_batch_must_split_over_processes(tmp_path: Path) -> None:
    cfg = Config.from_yaml(None, [*TINY, "train.batch_size=3"])
    with pytest.raises(ValueError, match="divisible"):
        Trainer(cfg, tmp_path, DistInfo(rank=0, world_size=2), progress=False)


def test_too_small_training_split_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        _trainer(tmp_path, "train.batch_size=32")


def test_worker_count_does_not_change_the_run(tmp_path: Path) -> None:
    finals = []
    for workers in (0, 2):
        trainer = _trainer(tmp_path / str(workers), "train.steps=2", f"data.num_workers={workers}")
        trainer.fit()
        finals.append(load_checkpoint(tmp_path / str(workers) / "last.pt")["model"])
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


class _Record:
    """Wrap an objective and keep the targets it was given."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.targets: list[torch.Tensor] = []

    def __call__(self, out, y, step):
        self.targets.append(y.detach().clone())
        return self.objective(out, y, step)


@pytest.mark.parametrize("rater", ["random", "all"])
def test_the_step_trains_on_the_drawn_raters(tmp_path: Path, rater: str) -> None:
    from segcvae.engine.data import training_pairs

    trainer = _trainer(tmp_path, "train.steps=2", f"train.rater={rater}")
    trainer.objective = _Record(trainer.objective)
    batch = next(iter(trainer.loader))  # shapes: 3 plausible masks per item
    trainer._train_step(batch)
    (y,) = trainer.objective.targets
    expected = training_pairs(batch, rater, trainer.cfg.train.seed, 0)[1]
    assert torch.equal(y, expected)
    assert y.shape[0] == (12 if rater == "all" else 4)
