"""The training loop: data -> model -> objective -> step, with evaluation, checkpoints and logs.

The trainer knows nothing about a model beyond ``out = model(x, y)`` and
``terms = objective(out, y, step)``, a dict whose ``"loss"`` is minimised (both built from the
config by the family ``model.arch`` names). It runs unchanged in one process or under ``torchrun``
(DistributedDataParallel, one data shard per rank; rank 0 alone evaluates, logs and writes files).

The loop is detectron2's shape: :meth:`Trainer.fit` calls :meth:`Trainer.run_step` (one
optimisation step, ~30 lines) and :meth:`Trainer.after_step`, which hands over to the parts, each
small and testable alone: the training log (:class:`~segcvae.engine.meters.LossWindow`), the
divergence guard (:class:`~segcvae.engine.hook_divergence.DivergenceGuard`), the evaluation hook
(:class:`~segcvae.engine.hook_validation.ValidationHook`, ``cfg.eval`` whole) and the checkpointer
(:class:`~segcvae.engine.hook_checkpoints.Checkpointer`: ``last.pt``, ``best.pt`` by ``train.select``).
The run folder's layout is in :mod:`segcvae.engine.run_dir`.

Exact resume: the data order is a function of ``(seed, epoch)``, augmentations of
``(seed, epoch, index)``, and the checkpoint holds the model, optimizer, scheduler, scaler and RNG
states, so on CPU a run stopped after a checkpoint and resumed ends with the same weights as a run
that was never stopped.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from segcvae.config import Config, ConfigError, check_encoder_name
from segcvae.engine.checkpoint import restore_rng_state
from segcvae.engine.distributed import DistInfo, all_true
from segcvae.engine.eval_loop import check_eval_memory, unwrap
from segcvae.engine.hook_checkpoints import Checkpointer
from segcvae.engine.hook_divergence import DivergenceError, DivergenceGuard, NonFiniteLossError
from segcvae.engine.hook_validation import ValidationHook, warn_unscored_classes
from segcvae.engine.loaders import build_training_data, dataset_meta
from segcvae.engine.logger import RunLogger
from segcvae.engine.meters import TrainingLog
from segcvae.engine.optim import build_optimizer, build_scheduler
from segcvae.engine.run_dir import (
    RunDirError,
    RunExistsError,
    check_run_dir,
    clear_run_dir,
    folder_error,
    make_run_dir,
    remove_partial_writes,
)
from segcvae.engine.targets import target_weights, training_pairs
from segcvae.models import family_of

log = logging.getLogger("segcvae")

# Re-exported: what callers of the trainer catch and use.
__all__ = [
    "DivergenceError",
    "NonFiniteLossError",
    "RunExistsError",
    "RunDirError",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "check_run_dir",
    "dataset_meta",
    "warn_unscored_classes",
]


def _noise_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the sampling noise of ``rank`` from ``step`` on (ranks draw different noise)."""
    return (seed * 1_000_003 + rank * 7919 + step) % (2**63)


class Trainer:
    """Builds a run from a config and trains it.

    Args:
        cfg: The experiment.
        run_dir: Output folder.
        dist_info: From :func:`segcvae.engine.distributed.init_distributed`.
        progress: Show a tqdm progress bar (rank 0); without one, a log line every
            ``train.log_every`` steps.
        overwrite: Remove a previous run's files from ``run_dir`` (after the data and model are
            built, so a mistake found while building leaves the old run alone).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        dist_info: DistInfo,
        progress: bool = True,
        overwrite: bool = False,
    ) -> None:
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.dist = dist_info
        self.device = dist_info.device
        self.progress = progress
        self.overwrite = overwrite
        tc = cfg.train
        if tc.batch_size % dist_info.world_size:
            raise ConfigError(
                f"train.batch_size={tc.batch_size} is the global batch and must be divisible by the "
                f"number of processes ({dist_info.world_size})"
            )
        self.batch_size = tc.batch_size // dist_info.world_size
        self.family = family_of(cfg)
        self._seed("data")
        self.data = build_training_data(cfg, dist_info, self.batch_size)
        self.meta = self.data.meta
        self.num_classes = self.meta["num_classes"]
        self.loader, self.sampler = self.data.loader, self.data.sampler
        self._seed("model")
        self._build_model()
        size = cfg.data.image_size  # the validation's hypotheses: refused now if they cannot fit
        check_eval_memory(cfg.eval, self.num_classes, size, size, self.device)
        self.step = 0
        self.guard = DivergenceGuard(
            tc.max_bad_steps,
            self.run_dir / "last.pt",
            self._advice(),
            agree=lambda flag: all_true(flag, self.device),
        )
        self.train_log = TrainingLog(tc.batch_size, tc.steps)
        self.last_val: dict[str, Any] = {}
        self.created_run_dir = False

    # ------------------------------------------------------------------ building
    def _seed(self, phase: Literal["data", "model", "noise"]) -> None:
        """Every seed the trainer sets, in one place.

        ``"data"``: Python's, NumPy's and torch's RNGs from ``train.seed``, before the data is built.
        ``"model"``: torch's again, so the initial weights do not depend on what building the data
        drew. ``"noise"``: the sampling noise of this rank from ``self.step`` on (a fresh run, or a
        resume whose checkpoint holds no RNG state).
        """
        seed = self.cfg.train.seed
        if phase == "data":
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        elif phase == "model":
            torch.manual_seed(seed)
        elif phase == "noise":
            torch.manual_seed(_noise_seed(seed, self.dist.rank, self.step))
        else:
            raise ValueError(f"unknown seeding phase {phase!r}")

    def _build_model(self) -> None:
        """The family's model and objective, the optimiser, schedule and mixed precision."""
        cfg, tc = self.cfg, self.cfg.train
        check_encoder_name(cfg.model.encoder_name)
        self.model: nn.Module = self.family.from_config(cfg, self.num_classes).to(self.device)
        self.channels_last = tc.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = self.family.build_objective(cfg).to(self.device)
        # a model that scores a set of masks per image in one pass gets them all (train.rater)
        self.target_sets = bool(self.model.scores_target_sets)
        self.optimizer = build_optimizer(self.model, tc)
        self.scheduler = build_scheduler(self.optimizer, tc.lr_decay, tc.lr_schedule, tc.steps)
        self.amp_dtype, self.amp_enabled = self._amp(tc.amp)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_enabled and self.amp_dtype == torch.float16
        )
        self.checkpointer = Checkpointer(
            self.run_dir,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            config=cfg.to_dict(),
            meta=self.meta,
            select=tc.select,
            enabled=self.dist.is_main,
        )

    def _amp(self, amp: str) -> tuple[torch.dtype, bool]:
        dtypes = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if amp not in dtypes:
            raise ConfigError(f"train.amp: expected one of {', '.join(dtypes)}, got {amp!r}")
        if amp == "fp16" and self.device.type != "cuda":
            log.warning("train.amp=fp16 needs CUDA; training in float32 on %s", self.device)
            return torch.float32, False
        return dtypes[amp], amp != "none"

    def _advice(self) -> str:
        tc = self.cfg.train
        return (
            f"Try a lower train.lr (now {tc.lr:g}), train.grad_clip > 0 (now {tc.grad_clip:g})"
            + (f" or train.amp=none (now {tc.amp})" if tc.amp != "none" else "")
            + "."
        )

    @property
    def model_name(self) -> str:
        """What the logs call the model (the family's ``describe``)."""
        return self.family.describe(self.cfg)

    @property
    def steps_per_epoch(self) -> int:
        """Training steps in one pass over this rank's shard (the last incomplete batch dropped)."""
        return self.sampler.num_samples // self.batch_size

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``train.steps``; returns a summary (step, best validation value, last metrics).

        Each step: :meth:`run_step`, then :meth:`after_step` (log, evaluate, checkpoint when due).
        """
        self.before_train(resume)
        show = self.dist.is_main and self.progress
        bar = tqdm(total=self.cfg.train.steps, initial=self.step, desc="train", unit="step",
                   dynamic_ncols=True, disable=not show)  # fmt: skip
        start = time.perf_counter()
        try:
            t_batch = time.perf_counter()
            for batch in self._batches():
                terms = self.run_step(batch)
                self.step += 1
                self.train_log.add(terms, time.perf_counter() - t_batch)
                bar.update(1)
                self.after_step(bar)
                t_batch = time.perf_counter()
        finally:
            bar.close()
            self.logger.close()
        return self._summary(time.perf_counter() - start)

    def before_train(self, resume: bool) -> None:
        """Make the run folder, resume (or seed the noise of a fresh run), wrap in DDP, write the
        resolved config."""
        if self.dist.is_main:
            if self.overwrite and self.run_dir.is_dir():
                removed = clear_run_dir(self.run_dir)
                if removed:
                    log.warning("--overwrite: removed %s from %s", ", ".join(removed), self.run_dir)
            self.created_run_dir = make_run_dir(self.run_dir)
            partial = remove_partial_writes(self.run_dir)
            if partial:
                log.warning(
                    "removed %s from %s: left by a run stopped while writing",
                    ", ".join(partial),
                    self.run_dir,
                )
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main)
        if self.dist.is_main:
            args = (self.data.val_loader, self.meta, self.logger, self.run_dir, self.model_name)
            self.validation = ValidationHook(self.cfg, *args)
        if not (resume and self.resume()):
            self._seed("noise")
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Every objective reaches every parameter of the model it trains (tested for every
            # family), so DDP need not search the graph for unused ones.
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=False
            )
        if not self.dist.is_main:
            return
        try:
            self.cfg.to_yaml(self.run_dir / "config.yaml")
        except OSError as e:
            raise folder_error(self.run_dir, e) from None
        n_params = sum(p.numel() for p in self.model.parameters()) / 1e6
        where = f"{self.dist.world_size} x {self.device}" if self.dist.distributed else self.device
        log.info(
            f"training {self.model_name} ({self.cfg.data.name}, {n_params:.2f}M parameters) on "
            f"{where} for {self.cfg.train.steps} steps -> {self.run_dir}"
        )

    def resume(self, path: str | Path | None = None) -> bool:
        """Load ``run_dir/last.pt`` (or ``path``) if it exists; returns whether it did."""
        path = Path(path) if path is not None else self.run_dir / "last.pt"
        if not path.is_file():
            if self.dist.is_main:
                log.warning("--resume: no checkpoint at %s; starting from step 0", path)
            self.logger.truncate_after(0)  # records of a run that left no checkpoint: not kept
            return False
        ckpt = self.checkpointer.load(path)
        self.step = int(ckpt["step"])
        self.guard.last_saved_step = self.step
        if self.dist.is_main and ckpt.get("rng") is not None:
            restore_rng_state(ckpt["rng"])
        else:
            self._seed("noise")
        self.logger.truncate_after(self.step)
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.step)
        return True

    def _batches(self) -> Any:
        """Training batches from ``self.step`` to ``train.steps``, epoch after epoch.

        The data order is a function of ``(seed, epoch)``, so a resumed run continues mid-epoch
        exactly where the checkpoint was written.
        """
        while self.step < self.cfg.train.steps:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, offset * self.batch_size)
            self.data.train_set.set_epoch(epoch)
            for batch in self.loader:
                yield batch
                if self.step >= self.cfg.train.steps:
                    return

    def run_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """One optimisation step; returns the detached loss terms, or None when it was skipped."""
        tc = self.cfg.train
        # one rater per item, or all (for a model that scores sets: every item's masks at once)
        x, y = training_pairs(batch, tc.rater, tc.seed, self.step, target_sets=self.target_sets)
        x = x.to(self.device, non_blocking=True)  # (B, 3, H, W)
        y = y.to(self.device, non_blocking=True)  # (B, H, W), or (B, R, H, W) target sets
        # target sets of masks with known probabilities: weighted by them instead of averaged
        weights = target_weights(batch, tc.rater, target_sets=self.target_sets)
        extra = {} if weights is None else {"mask_probs": weights.to(self.device)}
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled):
            out = self.model(x, y)
            terms = self.objective(out, y, self.step, **extra)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        # Every rank must take the same decision, or DDP's gradient all-reduce would hang.
        finite = bool(torch.isfinite(loss.detach()))
        skip = self.guard.check_loss(finite, float(loss.detach()), self.step + 1)
        if skip is not None:
            if self.dist.is_main:
                log.warning(skip)
            return None
        self.scaler.scale(loss).backward()
        if tc.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        out_terms = {k: v.detach().float() for k, v in terms.items() if v.numel() == 1}
        if "kl" in out_terms:  # nats per pixel -> nats per image
            out_terms["kl_per_image"] = out_terms["kl"] * (y.shape[-1] * y.shape[-2])
        return out_terms

    def after_step(self, bar: Any = None) -> None:
        """What is due after step ``self.step``: the training log, an evaluation, a checkpoint."""
        tc = self.cfg.train
        if self.step % max(tc.log_every, 1) == 0 and self.dist.is_main:
            self.train_log.write(self.step, self._lr(), self.logger, bar)
        final = self.step >= tc.steps
        do_eval = final or (tc.eval_every > 0 and self.step % tc.eval_every == 0)
        do_save = do_eval or (tc.checkpoint_every > 0 and self.step % tc.checkpoint_every == 0)
        if do_save:  # every rank: same weights, same decision
            self.guard.check_health(unwrap(self.model), self.step, final)
        if do_eval:
            self._evaluate(bar)
        if do_save:
            self._save_last()

    # ------------------------------------------------------------------ the parts' calls
    def _evaluate(self, bar: Any = None) -> None:
        """Evaluate (rank 0) with the training means since the last evaluation (over all ranks);
        write ``best.pt`` when the ``train.select`` metric is the best so far."""
        train_means, ips = self.train_log.take_eval_window(self.device, self.dist.distributed)
        if self.dist.is_main:
            record = {
                "step": self.step,
                "epoch": self.step / max(self.steps_per_epoch, 1),
                "lr": self._lr(),
                "images_per_s": ips,
                "skipped_steps": self.guard.skipped,
                "train": train_means,
            }
            self.last_val = self.validation(self.model, self.step, record, bar)
            if self.guard.healthy(unwrap(self.model)):
                self.checkpointer.update_best(self.step, self.last_val)

    def _save_last(self) -> None:
        """Write last.pt (rank 0), unless the loss is exploding (then the previous one stays)."""
        if self.guard.exploding:
            if self.dist.is_main:
                log.warning(
                    "step %d: not writing last.pt while the loss is exploding (%d steps in a "
                    "row); %s",
                    self.step,
                    self.guard.exploding_in_row,
                    self.guard.last_good(),
                )
            return
        self.checkpointer.save_last(self.step)
        self.guard.last_saved_step = self.step

    def _summary(self, wall: float) -> dict[str, Any]:
        select = self.cfg.train.select
        summary = {
            "step": self.step,
            "select": select,
            "best_metric": self.checkpointer.best,
            "val": self.last_val,
            "skipped_steps": self.guard.skipped,
            "wall_s": wall,
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            log.info(
                "done: %d steps in %.1f s; best val %s %s",
                self.step,
                wall,
                select,
                "none" if self.checkpointer.best is None else f"{self.checkpointer.best:.4f}",
            )
        return summary

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
