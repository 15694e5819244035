"""Plumbing shared by the toy commands: data, a minimal trainer, timing, JSON and figures."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from segcvae.toy.mnist import binarize, load_mnist  # noqa: E402


@dataclass
class Digits:
    """One MNIST split prepared for a toy model.

    Attributes:
        x: (N, 784) float pixels: {0, 1} when binarised, else intensities in [0, 1].
        labels: (N,) int64 digit labels.
    """

    x: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def load_digits(
    root: str | Path, split: str, binarization: str | None = "threshold", limit: int | None = None
) -> Digits:
    """Load, flatten and binarise an MNIST split.

    Args:
        root: Folder with the idx files.
        split: ``"train"`` or ``"test"``.
        binarization: ``"threshold"`` (pixel > 0.5), ``"dynamic"`` (one fixed Bernoulli draw,
            seeded per split) or None (intensities in [0, 1]).
        limit: Keep only the first ``limit`` digits.
    """
    images, labels = load_mnist(root, split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if binarization is None:
        x = images.float() / 255.0
    else:
        seed = {"train": 0, "test": 1}[split]
        x = binarize(images, binarization, torch.Generator().manual_seed(seed))
    return Digits(x.flatten(1), labels)


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches over ``range(n)``, dropping a last batch smaller than half."""
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) >= max(1, batch_size // 2) or start == 0:
            yield idx


@dataclass
class Stopwatch:
    """Wall-clock and process CPU seconds since creation (CPU time is robust to a busy machine)."""

    wall0: float = field(default_factory=time.perf_counter)
    cpu0: float = field(default_factory=time.process_time)

    def read(self) -> dict[str, float]:
        return {
            "wall_s": round(time.perf_counter() - self.wall0, 1),
            "cpu_s": round(time.process_time() - self.cpu0, 1),
        }


def num_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`minibatches` yields for ``n`` examples."""
    full, rest = divmod(n, batch_size)
    return max(1, full + (rest >= max(1, batch_size // 2)))


def run_epochs(
    step: Callable[[Tensor], dict[str, Tensor]],
    num_examples: int,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    log: Callable[[str], None] = print,
    name: str = "",
) -> list[dict[str, float]]:
    """The epoch loop: shuffled minibatches, per-epoch means of the terms, a log line per epoch.

    Args:
        step: Does one optimisation step on a batch of example indices (B,) and returns its terms.
        num_examples: Size of the training set.
        epochs, batch_size, seed: The usual.
        log: Receives one line per epoch.
        name: Prefix of the log lines and errors.

    Returns:
        Per epoch, the mean of every term plus ``"epoch"`` and ``"wall_s"``.
    """
    generator = torch.Generator().manual_seed(seed)
    clock, history = Stopwatch(), []
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        count = 0
        for idx in minibatches(num_examples, batch_size, generator):
            for key, value in step(idx).items():
                sums[key] = sums.get(key, 0.0) + value.item() * len(idx)
            count += len(idx)
        record = {key: value / count for key, value in sums.items()}
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(f"{name}: non-finite loss in epoch {epoch}: {record}")
        record.update(epoch=epoch + 1, wall_s=clock.read()["wall_s"])
        history.append(record)
        terms_text = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k != "epoch")
        log(f"{name} epoch {epoch + 1}/{epochs} {terms_text}")
    return history


def train_adam(
    model: nn.Module,
    loss_fn: Callable[[Tensor], dict[str, Tensor]],
    num_examples: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    cosine: bool = False,
    log: Callable[[str], None] = print,
    name: str = "",
) -> list[dict[str, float]]:
    """Adam over shuffled minibatches; the trainer knows only "call loss_fn, read the dict".

    Args:
        model: Its parameters with ``requires_grad`` are optimised.
        loss_fn: Maps a batch of example indices (B,) to terms with a scalar ``"loss"``.
        num_examples: Size of the training set.
        epochs, batch_size, lr, seed: The usual.
        cosine: Decay the learning rate to 0 along a cosine over all steps.
        log: Receives one line per epoch.
        name: Prefix of the log lines.

    Returns:
        Per epoch, the mean of every term plus ``"epoch"`` and ``"wall_s"``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    steps = epochs * num_batches(num_examples, batch_size)
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, steps)) if cosine else None
    )

    def step(idx: Tensor) -> dict[str, Tensor]:
        terms = loss_fn(idx)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        return terms

    model.train()
    history = run_epochs(
        step, num_examples, epochs=epochs, batch_size=batch_size, seed=seed, log=log, name=name
    )
    model.eval()
    return history


def training_summary(history: list[dict[str, float]], timing: dict[str, float]) -> dict:
    """First / last epoch loss and the ``train_wall_s`` / ``train_cpu_s`` of a run's metrics."""
    return {
        "train_loss_first_epoch": round(history[0]["loss"], 3),
        "train_loss_last_epoch": round(history[-1]["loss"], 3),
        **{f"train_{k}": v for k, v in timing.items()},
    }


def finish_run(
    name: str, metrics: dict, out: Path, finite_key: str, log: Callable[[str], None]
) -> dict:
    """Refuse a non-finite headline metric, write ``out/metrics.json``, log and return ``metrics``."""
    if not math.isfinite(metrics[finite_key]):
        raise FloatingPointError(f"{name}: non-finite {finite_key}: {metrics}")
    write_json(out / "metrics.json", metrics)
    log(f"{name}: {metrics}")
    return metrics


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def save_grid(
    images: Tensor,
    path: str | Path,
    title: str = "",
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
) -> None:
    """Save a grid of digits as a PNG.

    Args:
        images: (R, C, 784) or (R, C, 28, 28), values in [0, 1].
        path: Output PNG.
        title: Figure title.
        row_labels, col_labels: Optional text beside each row / above each column.
    """
    images = images.detach().float().reshape(images.shape[0], images.shape[1], 28, 28)
    rows, cols = images.shape[:2]
    # one image: rows of 28 px digits separated by 2 px, cheaper than R * C matplotlib axes
    canvas = torch.full((rows * 30 - 2, cols * 30 - 2), 0.2)  # light grey gaps
    for r in range(rows):
        for c in range(cols):
            canvas[r * 30 : r * 30 + 28, c * 30 : c * 30 + 28] = images[r, c]
    fig, ax = plt.subplots(figsize=(max(2.0, 0.42 * cols + 0.6), max(2.0, 0.42 * rows + 0.5)))
    ax.imshow(canvas.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([c * 30 + 14 for c in range(cols)] if col_labels else [])
    ax.set_yticks([r * 30 + 14 for r in range(rows)] if row_labels else [])
    if col_labels:
        ax.set_xticklabels(col_labels, fontsize=7)
        ax.xaxis.tick_top()
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=7)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9, pad=14 if col_labels else 4)
    _save(fig, path)


def save_scatter(
    z: Tensor,
    labels: Tensor,
    path: str | Path,
    title: str = "",
    background: Tensor | None = None,
    background_labels: Tensor | None = None,
) -> None:
    """Save a 2-D scatter of codes coloured by digit.

    Args:
        z: (N, 2) codes.
        labels: (N,) digits.
        path: Output PNG.
        title: Figure title.
        background: Optional (M, 2) prior samples drawn faintly underneath.
        background_labels: Optional (M,) arm of each prior sample, coloured like the digits.
    """
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    if background is not None:
        colours = {"c": "0.75"}
        if background_labels is not None:
            colours = {"c": background_labels.numpy(), "cmap": "tab10", "vmin": -0.5, "vmax": 9.5}
        ax.scatter(*background.T.numpy(), s=1, alpha=0.15, rasterized=True, **colours)
    points = ax.scatter(
        *z.T.numpy(), s=2, c=labels.numpy(), cmap="tab10", vmin=-0.5, vmax=9.5, rasterized=True
    )
    fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="datalim")
    _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90, pil_kwargs={"optimize": True})
    plt.close(fig)
