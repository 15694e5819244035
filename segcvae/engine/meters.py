"""Loss means over a window of steps (for the training log and the evaluation records)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from segcvae.engine.distributed import all_reduce_sum

log = logging.getLogger("segcvae")


class LossWindow:
    """Sums of the loss terms of the steps since the window began, and their wall time."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.n = 0  # steps with loss terms (a skipped step is timed, not counted)
        self.seconds = 0.0

    def add(self, terms: dict[str, torch.Tensor] | None, seconds: float) -> None:
        """Count one step's detached loss terms (None: a skipped step, timed only)."""
        self.seconds += seconds
        if terms is None:
            return
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def means(self) -> dict[str, float]:
        """Mean of each term over the counted steps (this process only)."""
        return {k: float(v) / max(self.n, 1) for k, v in self.sums.items()}

    def reduced_means(self, device: torch.device, distributed: bool) -> dict[str, float]:
        """Mean of each term over the counted steps of every process (sorted by name)."""
        keys = sorted(self.sums)
        if not distributed:
            return {k: float(self.sums[k]) / max(self.n, 1) for k in keys}
        t = torch.stack(
            [torch.as_tensor(self.sums[k], device=device).float() for k in keys]
            + [torch.tensor(float(self.n), device=device)]
        )
        all_reduce_sum(t)
        total_n = float(t[-1])
        return {k: float(t[i]) / max(total_n, 1.0) for i, k in enumerate(keys)}

    def images_per_s(self, batch_size: int) -> float:
        """Training throughput over the window."""
        return self.n * batch_size / max(self.seconds, 1e-9)


class TrainingLog:
    """The training log: loss means every ``train.log_every`` steps to ``train_log.jsonl`` and the
    progress bar (or a log line), and the means since the last evaluation.

    Attributes:
        window: Steps since the last training-log line.
        since_eval: Steps since the last evaluation.
    """

    def __init__(self, batch_size: int, total_steps: int) -> None:
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.window = LossWindow()
        self.since_eval = LossWindow()

    def add(self, terms: dict[str, torch.Tensor] | None, seconds: float) -> None:
        """Count one step in both windows (None: a skipped step, timed only)."""
        self.window.add(terms, seconds)
        self.since_eval.add(terms, seconds)

    def write(self, step: int, lr: float, logger: Any, bar: Any = None) -> None:
        """Show and write the mean losses since the last log line; starts a new window."""
        ips = self.window.images_per_s(self.batch_size)
        means = self.window.means()
        shown = {k: means[k] for k in ("loss", "nll", "kl") if k in means}
        shown = shown or dict(list(means.items())[:3])
        if bar is not None and not bar.disable:
            bar.set_postfix(
                {**{k: f"{v:.4f}" for k, v in shown.items()}, "img/s": f"{ips:.1f}"}, refresh=False
            )
        else:
            parts = " ".join(f"{k} {v:.4f}" for k, v in shown.items())
            log.info("step %d/%d  %s  lr %.3g  %.1f img/s", step, self.total_steps, parts, lr, ips)
        logger.log_train({"step": step, "lr": lr, "images_per_s": ips, "train": means})
        self.window = LossWindow()

    def take_eval_window(self, device: torch.device, distributed: bool) -> tuple[dict, float]:
        """The means (over every process) and throughput since the last evaluation; starts anew."""
        means = self.since_eval.reduced_means(device, distributed)
        ips = self.since_eval.images_per_s(self.batch_size)
        self.since_eval = LossWindow()
        return means, ips
