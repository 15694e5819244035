"""The training loop: non-finite losses, the paper's LR decay, AMP fallback on CPU, seeding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcvae.config import Config
from segcvae.engine.checkpoint import load_checkpoint
from segcvae.engine.distributed import DistInfo
from segcvae.engine.trainer import (
    DivergenceError,
    NonFiniteLossError,
    RunExistsError,
    Trainer,
    build_optimizer,
    build_scheduler,
    check_run_dir,
    clear_run_dir,
)
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
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row") as info:
        trainer.fit()
    assert f"the newest checkpoint is {tmp_path / 'last.pt'} from step 2" in str(info.value)
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


def test_cosine_schedule_anneals_to_zero_at_the_last_step() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=2e-3)
    sched = build_scheduler(opt, 1e-3, "cosine", steps=100)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[50] == pytest.approx(1e-3)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ValueError, match="schedule"):
        build_scheduler(opt, 1e-3, "step", steps=10)


def test_cosine_schedule_from_config(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=4", "train.lr_schedule=cosine")
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_amp_is_ignored_on_cpu_and_channels_last_is_used(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=1", "train.amp=fp16", "train.channels_last=true")
    assert not trainer.amp_enabled and not trainer.scaler.is_enabled() and trainer.channels_last
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.fit()["step"] == 1


def test_channels_last_trains_to_the_same_weights_up_to_float_rounding(tmp_path: Path) -> None:
    finals = []
    for layout in ("false", "true"):
        trainer = _trainer(tmp_path / layout, "train.steps=2", f"train.channels_last={layout}")
        trainer.fit()
        finals.append(load_checkpoint(tmp_path / layout / "last.pt")["model"])
    for k in finals[0]:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-3, atol=1e-4)


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


class _ExplodeFrom:
    """Wrap an objective so that its loss is multiplied by ``factor`` from ``step`` on."""

    def __init__(self, objective, step, factor=1e6) -> None:
        self.objective, self.step, self.factor = objective, step, factor

    def __call__(self, out, y, step):
        terms = self.objective(out, y, step)
        if step >= self.step:
            terms["loss"] = terms["loss"] * self.factor
        return terms


def test_an_exploding_loss_stops_and_names_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(
        tmp_path, "train.steps=20", "train.max_bad_steps=3", "train.checkpoint_every=2"
    )
    trainer.objective = _ExplodeFrom(trainer.objective, 4)  # steps 5, 6, 7 explode
    with pytest.raises(DivergenceError, match=r"diverged at step 7: .* 3 steps in a row") as info:
        trainer.fit()
    assert f"{tmp_path / 'last.pt'} from step 4" in str(info.value)
    assert "intact" not in str(info.value)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4  # step 6 was not saved


def test_exploded_weights_are_never_saved(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=4", "train.checkpoint_every=2")
    trainer.fit()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(1e9)
    trainer.step = 6
    with pytest.raises(DivergenceError, match=r"holds a value of 1e\+09 .* from step 4"):
        trainer.guard.check_health(trainer.model, trainer.step, final=False)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


def test_a_run_that_ends_exploding_is_not_a_success(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=4", "train.max_bad_steps=5")
    trainer.objective = _ExplodeFrom(trainer.objective, 2)
    with pytest.raises(DivergenceError, match="training ended at step 4 with the loss exploding"):
        trainer.fit()


def test_kl_per_image_is_logged_and_an_unused_latent_is_reported(tmp_path: Path, caplog) -> None:
    trainer = _trainer(tmp_path, "train.steps=2", "train.log_every=1")
    trainer.fit()
    record = trainer.logger.train_records()[-1]["train"]
    assert record["kl_per_image"] == pytest.approx(record["kl"] * 32 * 32, rel=1e-5)
    from segcvae.engine.hook_validation import warn_if_latent_unused

    with caplog.at_level("WARNING", logger="segcvae"):
        warn_if_latent_unused(trainer.cfg, 2, {"kl_per_image": 0.01}, {"diversity": 0.99})
    assert "0.01 nats per image" in caplog.text and "behaves like a CNN" in caplog.text
    assert "loss.kl_warmup_steps" in caplog.text and "loss.free_bits" in caplog.text
    assert "mean pairwise IoU 0.990" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="segcvae"):
        warn_if_latent_unused(trainer.cfg, 2, {"kl_per_image": 5.0}, {})
    assert caplog.text == ""


def test_best_checkpoint_is_for_inference_last_for_resume(tmp_path: Path) -> None:
    cfg = Config.from_yaml(None, [*TINY, "train.steps=2", "train.eval_every=2", "eval.samples=0"])
    Trainer(cfg, tmp_path, DistInfo(), progress=False).fit()
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert "optimizer" not in best and last["optimizer"] is not None and last["rng"] is not None
    assert best["step"] == last["step"] == 2
    assert (tmp_path / "best.pt").stat().st_size < 0.6 * (tmp_path / "last.pt").stat().st_size


def test_run_folder_check(tmp_path: Path) -> None:
    check_run_dir(tmp_path / "new")  # nothing there: fine
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunExistsError, match="--resume.*--out.*--overwrite"):
        check_run_dir(tmp_path)
    check_run_dir(tmp_path, resume=True)
    check_run_dir(tmp_path, overwrite=True)
    (tmp_path / "samples").mkdir()
    (tmp_path / "mine.txt").write_text("")
    assert sorted(clear_run_dir(tmp_path)) == ["metrics.jsonl", "samples/"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_a_class_without_iou_is_reported(caplog):
    from segcvae.engine.trainer import warn_unscored_classes

    with caplog.at_level("WARNING", logger="segcvae"):
        assert warn_unscored_classes({"per_class_iou": [1.0, float("nan")]}, ["bg", "fg"], "val")
    assert "class fg occurs in neither" in caplog.text and "other 1 class" in caplog.text
    assert not warn_unscored_classes({"per_class_iou": [1.0, 0.5]}, ["bg", "fg"], "val")


def test_resume_removes_the_temporary_files_of_a_killed_write(tmp_path: Path, caplog) -> None:
    trainer = _trainer(tmp_path, "train.steps=1", "train.eval_every=0")
    trainer.fit()
    left = [".last.pt.k3j_x0.tmp", ".best.pt.a1b2c3.tmp", "metrics.jsonl.tmp"]
    for name in left:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("the user's")  # not a name the run writes: kept
    resumed = _trainer(tmp_path, "train.steps=2", "train.eval_every=0")
    with caplog.at_level("WARNING", logger="segcvae"):
        resumed.fit(resume=True)
    assert resumed.step == 2
    assert not [name for name in left if (tmp_path / name).exists()]
    assert (tmp_path / "notes.tmp").read_text() == "the user's"
    assert (
        "left by a run stopped while writing" in caplog.text
        and ".last.pt.k3j_x0.tmp" in caplog.text
    )


def test_resume_without_a_checkpoint_does_not_interleave_logs(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"step": 7, "val": {}}\n')
    trainer = _trainer(tmp_path, "train.steps=2", "train.eval_every=2")
    trainer.fit(resume=True)
    assert [r["step"] for r in trainer.logger.records()] == [2]


class _Record:
    """Wrap an objective and keep the targets it was given."""

    def __init__(self, objective) -> None:
        self.objective = objective
        self.targets: list[torch.Tensor] = []

    def __call__(self, out, y, step):
        self.targets.append(y.detach().clone())
        return self.objective(out, y, step)


@pytest.mark.parametrize(
    "rater, latent, shape",
    [
        ("random", "categorical", (4, 32, 32)),  # one drawn mask per image
        ("auto", "spatial", (4, 32, 32)),  # the default: random where "all" repeats images
        ("auto", "categorical", (4, 3, 32, 32)),  # and "all" where it costs one pass
        ("all", "spatial", (12, 32, 32)),  # every mask, the images repeated
        ("all", "categorical", (4, 3, 32, 32)),  # every mask, scored in one pass: a set per image
    ],
)
def test_the_step_trains_on_the_drawn_raters(
    tmp_path: Path, rater: str, latent: str, shape: tuple[int, ...]
) -> None:
    from segcvae.engine.targets import training_pairs

    trainer = _trainer(tmp_path, "train.steps=2", f"train.rater={rater}", f"model.latent={latent}")
    trainer.objective = _Record(trainer.objective)
    batch = next(iter(trainer.loader))  # shapes: 3 plausible masks per item
    terms = trainer.run_step(batch)
    (y,) = trainer.objective.targets
    sets = latent == "categorical"
    expected = training_pairs(batch, rater, trainer.cfg.train.seed, 0, target_sets=sets)[1]
    if rater == "auto":
        same = training_pairs(batch, "all" if sets else "random", trainer.cfg.train.seed, 0, sets)
        assert torch.equal(expected, same[1])
    assert torch.equal(y, expected)
    assert tuple(y.shape) == shape
    assert terms is not None and torch.isfinite(terms["loss"])


# ---------------------------------------------------------------- the loop's steps, one at a time
def test_the_train_step_updates_the_weights_and_returns_scalar_terms(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    terms = trainer.run_step(next(iter(trainer.loader)))
    assert terms is not None and "loss" in terms and all(v.numel() == 1 for v in terms.values())
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert trainer.step == 0  # the loop, not the step, counts steps


def test_the_loss_window_means_count_only_steps_with_terms() -> None:
    from segcvae.engine.meters import LossWindow

    w = LossWindow()
    w.add({"loss": torch.tensor(1.0)}, 0.5)
    w.add(None, 0.5)  # a skipped step: timed, not counted
    w.add({"loss": torch.tensor(3.0)}, 1.0)
    assert w.means() == {"loss": 2.0} and w.n == 2
    assert w.images_per_s(4) == pytest.approx(2 * 4 / 2.0)


def test_the_training_log_step_writes_the_window_and_starts_a_new_one(tmp_path: Path) -> None:
    import json

    trainer = _trainer(tmp_path)
    trainer.before_train(resume=False)
    trainer.step = 2
    for loss in (4.0, 2.0):
        trainer.train_log.add({"loss": torch.tensor(loss)}, 1.0)
    trainer.train_log.write(trainer.step, 1e-3, trainer.logger)
    trainer.logger.close()
    (record,) = [
        json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()
    ]
    assert record["step"] == 2 and record["train"] == {"loss": 3.0}
    log = trainer.train_log
    assert log.window.n == 0 and log.since_eval.n == 2  # the evaluation window goes on


def test_the_evaluation_step_logs_metrics_and_keeps_the_best(tmp_path: Path) -> None:
    import json

    trainer = _trainer(tmp_path)
    trainer.before_train(resume=False)
    trainer.step = 1
    trainer.train_log.add({"loss": torch.tensor(1.5)}, 1.0)
    trainer._evaluate()
    trainer.logger.close()
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["step"] == 1 and record["train"] == {"loss": 1.5} and "mean_iou" in record["val"]
    assert trainer.train_log.since_eval.n == 0 and trainer.last_val == record["val"]
    assert (tmp_path / "best.pt").is_file() == (trainer.checkpointer.best is not None)
    assert not (tmp_path / "last.pt").exists()  # checkpointing is its own step


def test_after_step_runs_what_is_due(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=10", "train.checkpoint_every=3", "train.eval_every=5")
    calls: list[tuple[str, int]] = []
    trainer.before_train(resume=False)
    trainer.train_log.write = lambda step, lr, logger, bar=None: calls.append(("log", step))
    trainer._evaluate = lambda bar=None: calls.append(("eval", trainer.step))
    trainer._save_last = lambda: calls.append(("save", trainer.step))
    for step in range(1, 11):
        trainer.step = step
        trainer.after_step(None)
    # log_every=2 (TINY); evaluations at 5 and 10 (the last step) also save
    assert [s for name, s in calls if name == "log"] == [2, 4, 6, 8, 10]
    assert [s for name, s in calls if name == "eval"] == [5, 10]
    assert [s for name, s in calls if name == "save"] == [3, 5, 6, 9, 10]


def test_batches_continue_mid_epoch_where_a_resumed_run_stopped(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "train.steps=6")
    assert trainer.steps_per_epoch == 4  # 16 items, batch 4
    ids = []
    for batch in trainer._batches():
        ids.append(list(batch["id"]))
        trainer.step += 1
    assert len(ids) == 6
    again = _trainer(tmp_path / "again", "train.steps=6")
    again.step = 5  # as after resuming at step 5: epoch 1, second batch
    assert list(next(again._batches())["id"]) == ids[5]


def test_a_run_that_fails_before_its_first_step_leaves_no_run_folder(
    tmp_path: Path, monkeypatch
) -> None:
    from segcvae.engine.run import train

    def broken(self, batch):
        raise RuntimeError("out of memory in the first step")

    monkeypatch.setattr(Trainer, "run_step", broken)
    cfg = Config.from_yaml(None, [*TINY, "train.steps=2"])
    with pytest.raises(RuntimeError, match="out of memory"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        train(cfg, tmp_path / "mine", progress=False)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_an_os_error_writing_the_run_folder_is_one_line(tmp_path: Path, monkeypatch) -> None:
    from segcvae.engine.run import train
    from segcvae.engine.run_dir import RunDirError

    def disk_full(self, step):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "last.pt"))

    import segcvae.engine.hook_checkpoints as checkpointer

    monkeypatch.setattr(checkpointer.Checkpointer, "save_last", disk_full)
    cfg = Config.from_yaml(None, [*TINY, "train.steps=2", "train.checkpoint_every=1"])
    with pytest.raises(RunDirError, match=r"run folder .*run: cannot write .*last.pt \(No space"):
        train(cfg, tmp_path / "run", progress=False)


@pytest.mark.parametrize("arch", ["sohn", "prob_unet"])
def test_bf16_mixed_precision_trains_on_cpu(tmp_path: Path, arch: str) -> None:
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    trainer = _trainer(tmp_path, "train.steps=2", "train.amp=bf16", f"model.arch={arch}")
    assert trainer.amp_enabled and trainer.amp_dtype == torch.bfloat16
    terms = trainer.run_step(next(iter(trainer.loader)))
    assert terms is not None and torch.isfinite(terms["loss"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # float32 weights
