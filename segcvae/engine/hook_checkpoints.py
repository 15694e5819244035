"""The checkpointer (timm's ``CheckpointSaver``): ``last.pt`` to continue a run, ``best.pt`` chosen
by a validation metric (``train.select``), and resuming from ``last.pt``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcvae.config import SELECT_METRICS
from segcvae.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)

log = logging.getLogger("segcvae")


class Checkpointer:
    """Writes the run's checkpoints and keeps the best validation value.

    Args:
        run_dir: The run folder (``last.pt`` and ``best.pt`` go there).
        model: The (unwrapped) model.
        optimizer: Its optimizer.
        scheduler: The learning-rate scheduler.
        scaler: The ``torch.amp.GradScaler``.
        config: ``cfg.to_dict()``, stored in every checkpoint.
        meta: The training data's ``{"num_classes", "class_names", "palette"}``.
        select: The validation metric that chooses ``best.pt`` (a key of
            :data:`~segcvae.config.SELECT_METRICS`, which says whether higher or lower is better).
        enabled: Write files (rank 0 only).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any,
        config: dict[str, Any],
        meta: dict[str, Any],
        select: str = "mean_iou",
        enabled: bool = True,
    ) -> None:
        if select not in SELECT_METRICS:
            raise ValueError(f"select must be one of {', '.join(SELECT_METRICS)}, got {select!r}")
        self.run_dir = Path(run_dir)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.config = config
        self.meta = meta
        self.select = select
        self.higher_is_better = SELECT_METRICS[select] == "max"
        self.enabled = enabled
        self.best: float | None = None  # the best validation value of ``select`` so far

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    def _save(self, path: Path, step: int, inference_only: bool) -> None:
        save_checkpoint(
            path,
            model=self.model,
            step=step,
            config=self.config,
            meta=self.meta,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            best_metric=self.best,
            rng=None if inference_only else capture_rng_state(),
            inference_only=inference_only,
            select=self.select,
        )

    def save_last(self, step: int) -> None:
        """Write ``last.pt``: everything needed to continue the run exactly."""
        if self.enabled:
            self._save(self.last_path, step, inference_only=False)

    def is_better(self, value: Any) -> bool:
        """Whether a validation value of ``select`` beats the best so far (NaN or missing: no)."""
        if not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.higher_is_better else value < self.best

    def update_best(self, step: int, metrics: dict[str, Any]) -> bool:
        """Write ``best.pt`` (weights only) if ``metrics[select]`` is the best so far.

        Call it only with a healthy model. Returns whether ``best.pt`` was written.
        """
        value = metrics.get(self.select)
        if not self.is_better(value):
            return False
        self.best = float(value)
        if self.enabled:
            self._save(self.best_path, step, inference_only=True)
            log.info("step %d: best.pt (%s %.4f)", step, self.select, self.best)
        return True

    def load(self, path: str | Path) -> dict[str, Any]:
        """Load a checkpoint's model, optimizer, scheduler and scaler states into the run's;
        returns the checkpoint (its ``step``, ``rng``, ``best_metric``).

        Raises:
            CheckpointError: the file is not a checkpoint, or its weights do not fit the model.
        """
        path = Path(path)
        ckpt = load_checkpoint(path, map_location="cpu")
        load_model_state(
            self.model,
            ckpt["model"],
            f"{path}: the weights do not fit the configured model",
            config=self.config,
            stored_config=ckpt["config"],
        )
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
        best = ckpt.get("best_metric")
        same_metric = ckpt.get("select", "mean_iou") == self.select
        self.best = float(best) if best is not None and same_metric else None
        return ckpt
