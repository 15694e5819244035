"""The training loop: data -> model -> objective -> step, with evaluation, checkpoints and logs.

The trainer knows nothing about a model beyond ``out = model(x, y)`` and
``terms = objective(out, y, step)``, a dict whose ``"loss"`` is minimised. It runs unchanged in one
process or under ``torchrun`` (DistributedDataParallel, one data shard per rank; rank 0 alone
evaluates, logs and writes checkpoints).

Run folder::

    config.yaml      the resolved config
    last.pt          the latest checkpoint (every ``train.checkpoint_every`` steps and at each evaluation)
    best.pt          the checkpoint with the best validation mean IoU
    metrics.jsonl    one JSON object per evaluation (step, mean training losses, validation metrics)
    train_log.jsonl  mean training losses every ``train.log_every`` steps
    curves.png       training curves
    samples/         validation sample grids, one per evaluation
    tensorboard/     TensorBoard events (when tensorboard is installed)

A folder that already holds a run (``last.pt``, ``best.pt``, ``metrics.jsonl`` or
``train_log.jsonl``) is not trained into again unless the run is resumed or ``overwrite`` is given
(:func:`check_run_dir`); overwriting removes the old run's files first.

Divergence: a step whose loss is not finite is skipped; a loss above ``EXPLODING_FACTOR`` times the
loss of the run's first step is counted as exploding; ``train.max_bad_steps`` such steps in a row,
or weights that are not finite or above ``MAX_ABS_WEIGHT``, stop the run with a
:class:`DivergenceError` that names the step of the last good checkpoint. A checkpoint is never
written while the loss is exploding or the weights are bad, so ``last.pt`` is always the last
healthy state.

Latent use: for latent objectives the training log has ``kl_per_image`` (KL(q || p) in nats per
image); after each evaluation a warning says so when it is below ``MIN_KL_PER_IMAGE``, i.e. the
hypotheses barely differ and the model behaves like the CNN.

Exact resume: the data order is a function of ``(seed, epoch)``, augmentations of
``(seed, epoch, index)``, and the checkpoint holds the model, optimizer, scheduler, scaler and RNG
states, so on CPU a run stopped after a checkpoint and resumed ends with the same weights as a run
that was never stopped.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Subset
from tqdm.auto import tqdm

from segcvae.config import Config, ConfigError, TrainConfig, check_encoder_name
from segcvae.data import build_transforms
from segcvae.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from segcvae.engine.data import (
    ItemSeededTransform,
    SeededAugmentation,
    check_labels,
    check_splits,
    eval_loader,
    open_dataset,
    train_loader,
    training_pairs,
)
from segcvae.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    all_true,
    cleanup_distributed,
    init_distributed,
)
from segcvae.engine.evaluation import evaluate, save_sample_grid, unwrap
from segcvae.engine.logger import RunLogger
from segcvae.losses import build_objective
from segcvae.models import create_model

log = logging.getLogger("segcvae")


# A loss this many times the first step's loss counts as exploding (a healthy run lowers it).
EXPLODING_FACTOR = 100.0
# No weight of a healthy network gets near this (Adam moves a weight by about lr per step).
MAX_ABS_WEIGHT = 1e6
# KL below this many nats per image after an evaluation: the latent carries next to nothing.
MIN_KL_PER_IMAGE = 0.1

# What a run writes into its folder (``--overwrite`` removes these, nothing else).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl", "config.yaml", "curves.png")
RUN_FOLDERS = ("samples", "tensorboard")
_RUN_MARKERS = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl")


class DivergenceError(RuntimeError):
    """Training diverged (non-finite or exploding loss, or bad weights); the message says where the
    last good checkpoint is."""


class NonFiniteLossError(DivergenceError):
    """Too many non-finite losses in a row."""


class RunExistsError(ConfigError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


def check_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to train into a folder that holds another run, unless resuming or overwriting.

    Raises:
        RunExistsError: naming the files found, ``--resume``, a new ``--out`` and ``--overwrite``.
        FileExistsError: ``run_dir`` is a file.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is an existing file; expected a run folder")
    if resume or overwrite or not run_dir.is_dir():
        return
    found = [name for name in _RUN_MARKERS if (run_dir / name).exists()]
    if found:
        raise RunExistsError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with --resume, "
            "train into a new --out folder, or replace it with --overwrite"
        )


def clear_run_dir(run_dir: str | Path) -> list[str]:
    """Remove the files of a previous run (:data:`RUN_FILES`, :data:`RUN_FOLDERS`); returns them."""
    import shutil

    run_dir = Path(run_dir)
    removed = []
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    for name in RUN_FOLDERS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
            removed.append(name + "/")
    return removed


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with ``train.lr`` and ``train.weight_decay`` (the paper's optimiser)."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    lr_decay: float,
    schedule: str = "inverse",
    steps: int = 1,
) -> LambdaLR:
    """The learning-rate factor per training step (stepped once per step).

    Args:
        optimizer: Its ``lr`` is the peak rate.
        lr_decay: ``"inverse"``: ``lr_t = lr / (1 + lr_decay * t)``, the paper's decay.
        schedule: ``"inverse"`` or ``"cosine"`` (``lr_t = lr * (1 + cos(pi * t / steps)) / 2``,
            annealed to 0 at the last step).
        steps: Length of the run (``"cosine"`` only).
    """
    if schedule == "cosine":
        total = max(1, steps)
        return LambdaLR(
            optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
        )
    if schedule != "inverse":
        raise ValueError(f"schedule must be 'inverse' or 'cosine', got {schedule!r}")
    return LambdaLR(optimizer, lambda t: 1.0 / (1.0 + lr_decay * t))


def dataset_meta(dataset: Any) -> dict[str, Any]:
    """What a checkpoint needs to know about the training data."""
    return {
        "num_classes": int(dataset.num_classes),
        "class_names": [str(c) for c in dataset.class_names],
        "palette": [[int(v) for v in rgb] for rgb in dataset.palette],
    }


def _noise_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the sampling noise of ``rank`` from ``step`` on (ranks draw different noise)."""
    return (seed * 1_000_003 + rank * 7919 + step) % (2**63)


class LossWindow:
    """Sums of the loss terms of the steps since the window began, and their wall time."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.n = 0  # steps with loss terms (a skipped step is timed, not counted)
        self.seconds = 0.0

    def add(self, terms: dict[str, torch.Tensor] | None, seconds: float) -> None:
        self.seconds += seconds
        if terms is None:
            return
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def means(self) -> dict[str, float]:
        """Mean of each term over the counted steps (this process only)."""
        return {k: float(v) / max(self.n, 1) for k, v in self.sums.items()}

    def images_per_s(self, batch_size: int) -> float:
        return self.n * batch_size / max(self.seconds, 1e-9)


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
        tc = cfg.train
        if tc.batch_size % dist_info.world_size:
            raise ConfigError(
                f"train.batch_size={tc.batch_size} is the global batch and must be divisible by the "
                f"number of processes ({dist_info.world_size})"
            )
        self.batch_size = tc.batch_size // dist_info.world_size
        self._seed("data")

        # Data: every rank trains on its shard; only rank 0 evaluates.
        train_tf = ItemSeededTransform(build_transforms(cfg.data, "train"))
        train_set = open_dataset(cfg.data, "train", train_tf)
        if dist_info.is_main:
            check_labels(train_set, cfg.data)
            check_splits(cfg.data, cfg.eval.split)
        self.meta = dataset_meta(train_set)
        self.num_classes = self.meta["num_classes"]
        self.train_set = SeededAugmentation(train_set, train_tf, tc.seed)
        pin = self.device.type == "cuda"
        self.loader, self.sampler = train_loader(
            self.train_set,
            self.batch_size,
            cfg.data.num_workers,
            tc.seed,
            rank=dist_info.rank,
            world_size=dist_info.world_size,
            pin_memory=pin,
        )
        self.val_loader = None
        if dist_info.is_main:
            ev = cfg.eval
            val_tf = build_transforms(
                cfg.data, ev.split, omission=ev.omission, omission_seed=ev.omission_seed
            )
            val_set = open_dataset(cfg.data, ev.split, val_tf)
            if ev.max_images > 0 and len(val_set) > ev.max_images:
                val_set = Subset(val_set, range(ev.max_images))
            self.val_loader = eval_loader(
                val_set, ev.batch_size, cfg.data.num_workers, pin_memory=pin
            )

        # Model, objective, optimisation.
        self._seed("model")
        check_encoder_name(cfg.model.encoder_name)
        self.model: nn.Module = create_model(cfg, self.num_classes).to(self.device)
        self.channels_last = tc.channels_last and self.device.type == "cuda"
        if tc.channels_last and not self.channels_last:
            log.warning("train.channels_last is for CUDA; ignored on %s", self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = build_objective(cfg).to(self.device)
        # a model that scores a set of masks per image in one pass gets them all (train.rater)
        self.target_sets = bool(getattr(self.model, "scores_target_sets", False))
        self.optimizer = build_optimizer(self.model, tc)
        self.scheduler = build_scheduler(self.optimizer, tc.lr_decay, tc.lr_schedule, tc.steps)
        self.amp_dtype, self.amp_enabled = self._amp(tc.amp)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_enabled and self.amp_dtype == torch.float16
        )

        self.step = 0
        self.best_metric = -math.inf
        self.bad_in_row = 0  # non-finite or exploding losses in a row
        self.exploding_in_row = 0  # finite, exploding losses in a row (their updates were applied)
        self.skipped = 0
        self.loss_reference: float | None = None  # the loss of the run's first step
        self.last_saved_step: int | None = None  # step of the newest good last.pt
        self.last_val: dict[str, Any] = {}
        self._warned_unscored = False
        self.window = LossWindow()  # steps since the last training-log line
        self.since_eval = LossWindow()  # steps since the last evaluation
        if overwrite and dist_info.is_main and self.run_dir.is_dir():
            removed = clear_run_dir(self.run_dir)
            if removed:
                log.warning("--overwrite: removed %s from %s", ", ".join(removed), self.run_dir)
        self.logger = RunLogger(self.run_dir, enabled=dist_info.is_main)

    # ------------------------------------------------------------------ set-up helpers
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

    def _amp(self, amp: str) -> tuple[torch.dtype, bool]:
        dtypes = {"none": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if amp not in dtypes:
            raise ConfigError(f"train.amp: expected one of {', '.join(dtypes)}, got {amp!r}")
        if amp != "none" and self.device.type != "cuda":
            log.warning("train.amp=%s needs CUDA; training in float32 on %s", amp, self.device)
            return torch.float32, False
        return dtypes[amp], amp != "none"

    def _wrap_ddp(self) -> None:
        if not self.dist.distributed:
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Every objective reaches every parameter of the model it builds (checked for cnn, gsnn,
        # cvae and hybrid), so DDP need not search the graph for unused ones.
        self.model = nn.parallel.DistributedDataParallel(
            self.model, device_ids=ids, find_unused_parameters=False
        )

    def resume(self, path: str | Path | None = None) -> bool:
        """Load ``run_dir/last.pt`` (or ``path``) if it exists; returns whether it did."""
        path = Path(path) if path is not None else self.run_dir / "last.pt"
        if not path.is_file():
            if self.dist.is_main:
                log.warning("--resume: no checkpoint at %s; starting from step 0", path)
            self.logger.truncate_after(0)  # records of a run that left no checkpoint: not kept
            return False
        ckpt = load_checkpoint(path, map_location="cpu")
        try:
            unwrap(self.model).load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{path} does not fit the configured model: {e}") from e
        if ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler") is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        if ckpt.get("kind") == "inference":
            log.warning(
                "%s holds no optimizer state (an inference checkpoint); Adam restarts", path
            )
        self.step = int(ckpt["step"])
        self.last_saved_step = self.step
        best = ckpt.get("best_metric")
        self.best_metric = -math.inf if best is None else float(best)
        if self.dist.is_main and ckpt.get("rng") is not None:
            restore_rng_state(ckpt["rng"])
        else:
            self._seed("noise")
        self.logger.truncate_after(self.step)
        if self.dist.is_main:
            log.info("resumed from %s at step %d", path, self.step)
        return True

    # ------------------------------------------------------------------ the loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``train.steps``; returns a summary (step, best mean IoU, last validation metrics).

        Each step: :meth:`_train_step`, then :meth:`_after_step` (log, evaluate, checkpoint when due).
        """
        self._begin(resume)
        bar = self._progress_bar()
        start = time.perf_counter()
        try:
            t_batch = time.perf_counter()
            for batch in self._batches():
                terms = self._train_step(batch)
                self.step += 1
                self._record(terms, time.perf_counter() - t_batch)
                bar.update(1)
                self._after_step(bar)
                t_batch = time.perf_counter()
        finally:
            bar.close()
            self.logger.close()
        return self._summary(time.perf_counter() - start)

    def _begin(self, resume: bool) -> None:
        """Resume (or seed the noise of a fresh run), wrap in DDP, write the run folder's config."""
        resumed = self.resume() if resume else False
        if not resumed:
            self._seed("noise")
        self._wrap_ddp()
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.cfg.to_yaml(self.run_dir / "config.yaml")
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "training %s (%s, %.2fM parameters) on %s for %d steps -> %s",
            self._model_name(),
            self.cfg.data.name,
            n_params / 1e6,
            f"{self.dist.world_size} x {self.device}" if self.dist.distributed else self.device,
            self.cfg.train.steps,
            self.run_dir,
        )

    def _progress_bar(self) -> Any:
        return tqdm(
            total=self.cfg.train.steps,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (self.dist.is_main and self.progress),
        )

    @property
    def steps_per_epoch(self) -> int:
        """Training steps in one pass over this rank's shard (the last incomplete batch dropped)."""
        return self.sampler.num_samples // self.batch_size

    def _batches(self) -> Any:
        """Training batches from ``self.step`` to ``train.steps``, epoch after epoch.

        The data order is a function of ``(seed, epoch)``, so a resumed run continues mid-epoch
        exactly where the checkpoint was written.
        """
        while self.step < self.cfg.train.steps:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, offset * self.batch_size)
            self.train_set.set_epoch(epoch)
            for batch in self.loader:
                yield batch
                if self.step >= self.cfg.train.steps:
                    return

    def _record(self, terms: dict[str, torch.Tensor] | None, seconds: float) -> None:
        """Add a step's loss terms (None: skipped, timed only) to the log and evaluation windows."""
        self.window.add(terms, seconds)
        self.since_eval.add(terms, seconds)

    def _after_step(self, bar: Any) -> None:
        """What is due after step ``self.step``: the training log, an evaluation, a checkpoint."""
        tc = self.cfg.train
        if self.step % max(tc.log_every, 1) == 0 and self.dist.is_main:
            self._log_train(bar)
        final = self.step >= tc.steps
        do_eval = final or (tc.eval_every > 0 and self.step % tc.eval_every == 0)
        do_save = do_eval or (tc.checkpoint_every > 0 and self.step % tc.checkpoint_every == 0)
        if do_save:
            self._check_health()  # every rank: same weights, same decision
        if do_eval:
            self._evaluate(bar)
        if do_save:
            self._save_last()

    def _log_train(self, bar: Any | None = None) -> None:
        """Show and write the mean losses since the last log line (rank 0); starts a new window."""
        ips = self.window.images_per_s(self.cfg.train.batch_size)
        means = self.window.means()
        self._show(bar, means, ips)
        self.logger.log_train(
            {"step": self.step, "lr": self._lr(), "images_per_s": ips, "train": means}
        )
        self.window = LossWindow()

    def _evaluate(self, bar: Any = None) -> None:
        """Evaluate (rank 0) with the training means since the last evaluation (over all ranks)."""
        train_means = self._reduce_means(self.since_eval.sums, self.since_eval.n)
        ips = self.since_eval.images_per_s(self.cfg.train.batch_size)
        if self.dist.is_main:
            self._evaluate_and_log(train_means, ips, bar)
        self.since_eval = LossWindow()

    def _summary(self, wall: float) -> dict[str, Any]:
        summary = {
            "step": self.step,
            "best_mean_iou": None if self.best_metric == -math.inf else self.best_metric,
            "val": self.last_val,
            "skipped_steps": self.skipped,
            "wall_s": wall,
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            log.info(
                "done: %d steps in %.1f s; best val mean IoU %s",
                self.step,
                wall,
                summary["best_mean_iou"],
            )
        return summary

    def _train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """One optimisation step; returns the detached loss terms, or None when it was skipped."""
        tc = self.cfg.train
        # one rater per item, or all (for a model that scores sets: every item's masks at once)
        x, y = training_pairs(batch, tc.rater, tc.seed, self.step, target_sets=self.target_sets)
        x = x.to(self.device, non_blocking=True)  # (B, 3, H, W)
        y = y.to(self.device, non_blocking=True)  # (B, H, W), or (B, R, H, W) target sets
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled):
            out = self.model(x, y)
            terms = self.objective(out, y, self.step)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        # Every rank must take the same decision, or DDP's gradient all-reduce would hang.
        if not all_true(bool(torch.isfinite(loss.detach())), self.device):
            self.bad_in_row += 1
            self.skipped += 1
            msg = (
                f"step {self.step + 1}: non-finite loss ({float(loss.detach()):.4g}); update skipped "
                f"({self.bad_in_row} in a row, {self.skipped} in total)"
            )
            if self.bad_in_row >= tc.max_bad_steps:
                raise NonFiniteLossError(
                    f"{msg}. Stopping after {tc.max_bad_steps} non-finite losses in a row "
                    f"(train.max_bad_steps); {self._last_good()}. {self._advice()}"
                )
            if self.dist.is_main:
                log.warning(msg)
            return None
        value = float(loss.detach())
        if self.loss_reference is None:
            self.loss_reference = max(value, 1e-3)
        if all_true(value <= EXPLODING_FACTOR * self.loss_reference, self.device):
            self.bad_in_row = self.exploding_in_row = 0
        else:
            self.bad_in_row += 1
            self.exploding_in_row += 1
            if self.bad_in_row >= tc.max_bad_steps:
                raise DivergenceError(
                    f"training diverged at step {self.step + 1}: loss {value:.4g}, over "
                    f"{EXPLODING_FACTOR:g} x the first step's {self.loss_reference:.4g}, for "
                    f"{self.bad_in_row} steps in a row (train.max_bad_steps); "
                    f"{self._last_good()}. {self._advice()}"
                )
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

    # ------------------------------------------------------------------ divergence
    def _advice(self) -> str:
        tc = self.cfg.train
        return (
            f"Try a lower train.lr (now {tc.lr:g}), train.grad_clip > 0 (now {tc.grad_clip:g})"
            + (f" or train.amp=none (now {tc.amp})" if tc.amp != "none" else "")
            + "."
        )

    def _last_good(self) -> str:
        if self.last_saved_step is None:
            return "no checkpoint was written (nothing of this run is worth keeping)"
        return (
            f"the newest checkpoint is {self.run_dir / 'last.pt'} from step "
            f"{self.last_saved_step}, the last one that passed these checks"
        )

    def _weights_problem(self) -> str | None:
        """Why the weights are not fit to save (not finite, or exploded), or None."""
        largest = 0.0
        for name, t in unwrap(self.model).state_dict().items():
            if not t.is_floating_point():
                continue
            if not bool(torch.isfinite(t).all()):
                return f"{name} holds NaN or inf"
            largest = max(largest, float(t.abs().max()) if t.numel() else 0.0)
            if largest > MAX_ABS_WEIGHT:
                return f"{name} holds a value of {largest:.3g} (> {MAX_ABS_WEIGHT:g})"
        return None

    def _check_health(self) -> None:
        """Raise :class:`DivergenceError` if the weights are bad, or the run ends exploding.

        Called on every rank at each checkpoint step (DDP keeps the weights identical, and the
        exploding count is agreed by all ranks, so all ranks stop together).
        """
        problem = self._weights_problem()
        if problem is not None:
            raise DivergenceError(
                f"training diverged by step {self.step}: {problem}; {self._last_good()}. "
                f"{self._advice()}"
            )
        if self.exploding_in_row > 0 and self.step >= self.cfg.train.steps:
            raise DivergenceError(
                f"training ended at step {self.step} with the loss exploding "
                f"({self.exploding_in_row} steps in a row over {EXPLODING_FACTOR:g} x the first "
                f"step's); {self._last_good()}. {self._advice()}"
            )

    def _save_last(self) -> None:
        """Write last.pt (rank 0), unless the loss is exploding (then the previous one stays).

        Call :meth:`_check_health` first.
        """
        if self.exploding_in_row > 0:
            if self.dist.is_main:
                log.warning(
                    "step %d: not writing last.pt while the loss is exploding (%d steps in a "
                    "row); %s",
                    self.step,
                    self.exploding_in_row,
                    self._last_good(),
                )
            return
        if self.dist.is_main:
            self._save(self.run_dir / "last.pt")
        self.last_saved_step = self.step

    def _reduce_means(self, sums: dict[str, Any], n: int) -> dict[str, float]:
        """Mean of each loss term over steps since the last evaluation, over all ranks."""
        keys = sorted(sums)
        if self.dist.distributed:
            t = (
                torch.stack(
                    [torch.as_tensor(sums[k], device=self.device).float() for k in keys]
                    + [torch.tensor(float(n), device=self.device)]
                )
                if keys
                else torch.tensor([float(n)], device=self.device)
            )
            all_reduce_sum(t)
            total_n = float(t[-1])
            return {k: float(t[i]) / max(total_n, 1.0) for i, k in enumerate(keys)}
        return {k: float(sums[k]) / max(n, 1) for k in keys}

    def _show(self, bar: Any | None, means: dict[str, float], ips: float) -> None:
        shown = {k: means[k] for k in ("loss", "nll", "kl") if k in means}
        if not shown:
            shown = dict(list(means.items())[:3])
        if bar is not None and not bar.disable:
            bar.set_postfix(
                {**{k: f"{v:.4f}" for k, v in shown.items()}, "img/s": f"{ips:.1f}"}, refresh=False
            )
        else:
            parts = " ".join(f"{k} {v:.4f}" for k, v in shown.items())
            log.info(
                "step %d/%d  %s  lr %.3g  %.1f img/s",
                self.step,
                self.cfg.train.steps,
                parts,
                self._lr(),
                ips,
            )

    def _model_name(self) -> str:
        """What the logs call the model: the objective for Sohn's family, else the family."""
        arch = self.cfg.model.arch
        return self.cfg.loss.objective if arch == "sohn" else arch

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _evaluate_and_log(
        self, train_means: dict[str, float], ips: float, bar: Any | None = None
    ) -> None:
        ev = self.cfg.eval
        assert self.val_loader is not None
        result = evaluate(
            self.model,
            self.val_loader,
            self.num_classes,
            self.cfg.data.ignore_index,
            samples=ev.samples,
            hypotheses=ev.hypotheses,
            num_vis=ev.num_vis,
            seed=self.cfg.train.seed,
        )
        val = result.metrics
        self.last_val = val
        record = {
            "step": self.step,
            "epoch": self.step / max(self.steps_per_epoch, 1),
            "lr": self._lr(),
            "images_per_s": ips,
            "skipped_steps": self.skipped,
            "train": train_means,
            "val": val,
        }
        self.logger.log(record)
        if result.vis is not None:
            save_sample_grid(
                result.vis,
                self.run_dir / "samples" / f"step_{self.step:07d}.png",
                self.meta["palette"],
                self.cfg.data.mean,
                self.cfg.data.std,
                title=f"{self._model_name()} step {self.step}: {ev.split} mean IoU {val['mean_iou']:.3f}",
            )
        shown = " ".join(
            f"{k} {val[k]:.4f}"
            for k in ("mean_iou", "pixel_accuracy", "nll", "ged", "hm_iou")
            if k in val
        )
        message = f"step {self.step}: train loss {train_means.get('loss', float('nan')):.4f} | {ev.split} {shown}"
        if bar is None or bar.disable:
            log.info(message)
        else:
            bar.write(message)
        self._warn_if_latent_unused(train_means, val)
        if not self._warned_unscored:
            self._warned_unscored = warn_unscored_classes(val, self.meta["class_names"], ev.split)
        miou = val.get("mean_iou", float("nan"))
        healthy = self.exploding_in_row == 0 and self._weights_problem() is None
        if not math.isnan(miou) and miou > self.best_metric and healthy:
            self.best_metric = miou
            self._save(self.run_dir / "best.pt", inference_only=True)

    def _warn_if_latent_unused(self, train_means: dict[str, float], val: dict[str, Any]) -> None:
        kl = train_means.get("kl_per_image")
        if kl is None or not math.isfinite(kl) or kl >= MIN_KL_PER_IMAGE:
            return
        lc = self.cfg.loss
        diversity = val.get("diversity")
        seen = (
            f"; the hypotheses agree (mean pairwise IoU {diversity:.3f})"
            if isinstance(diversity, float)
            else ""
        )
        log.warning(
            "step %d: KL(q || p) is %.3g nats per image (< %g): the latent is unused%s, so the "
            "model behaves like a CNN. Try a longer loss.kl_warmup_steps (now %d), loss.free_bits "
            "> 0 (now %g), or a higher loss.alpha (now %g: more CVAE, less GSNN).",
            self.step,
            kl,
            MIN_KL_PER_IMAGE,
            seen,
            lc.kl_warmup_steps,
            lc.free_bits,
            lc.alpha,
        )

    def _save(self, path: Path, inference_only: bool = False) -> None:
        save_checkpoint(
            path,
            model=unwrap(self.model),
            step=self.step,
            config=self.cfg.to_dict(),
            meta=self.meta,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            best_metric=None if self.best_metric == -math.inf else self.best_metric,
            rng=None if inference_only else capture_rng_state(),
            inference_only=inference_only,
        )


def warn_unscored_classes(metrics: dict[str, Any], class_names: list[str], split: str) -> bool:
    """Warn when a class has no IoU (in neither targets nor predictions); returns whether it did."""
    per_class = metrics.get("per_class_iou") or []
    missing = [
        str(name)
        for name, v in zip(class_names, per_class, strict=False)
        if not isinstance(v, float) or math.isnan(v)
    ]
    if not missing:
        return False
    log.warning(
        "%s: class %s occurs in neither the targets nor the predictions; its IoU is null and "
        "mean_iou is over the other %d class(es) only",
        split,
        ", ".join(missing),
        len(per_class) - len(missing),
    )
    return True


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (in one process, or as one rank under torchrun).

    Args:
        cfg: The experiment.
        run_dir: Output folder (created).
        resume: Continue from ``run_dir/last.pt`` when it exists.
        progress: Show a progress bar on rank 0.
        overwrite: Replace a run already in ``run_dir`` (else that is a :class:`RunExistsError`).

    Returns:
        The summary of :meth:`Trainer.fit`.

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        DivergenceError: The loss or the weights diverged (``last.pt`` is the last good state).
    """
    cfg.validate()
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    dist_info = init_distributed(cfg.train.device)
    try:
        trainer = Trainer(cfg, run_dir, dist_info, progress=progress, overwrite=overwrite)
        return trainer.fit(resume=resume)
    finally:
        cleanup_distributed()
