"""Pictures: coloured masks, overlays, hypothesis grids, uncertainty heat maps, training curves.

Everything returns or writes ``uint8`` RGB arrays (H, W, 3); PNGs are written with Pillow, class
masks as palette ("P" mode) PNGs whose pixel values are the class indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

Palette = Sequence[Sequence[int]]

IGNORE_COLOUR = (0, 0, 0)


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo ``Normalize`` for display.

    Args:
        image: (3, H, W) float tensor normalised with ``mean`` / ``std`` (on a 0..1 scale).

    Returns:
        (H, W, 3) uint8.
    """
    m = image.new_tensor(mean).view(-1, 1, 1)
    s = image.new_tensor(std).view(-1, 1, 1)
    x = (image.detach().float() * s + m).clamp(0, 1) * 255
    return x.round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def colorize(labels: np.ndarray | torch.Tensor, palette: Palette) -> np.ndarray:
    """Class indices to colours; values outside the palette (e.g. ignore = 255) are black.

    Args:
        labels: (H, W) integer class indices.
        palette: One RGB triple per class.

    Returns:
        (H, W, 3) uint8.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:] = IGNORE_COLOUR
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    idx = np.clip(labels.astype(np.int64), 0, 255)
    return lut[idx]


def overlay(
    image: np.ndarray, labels: np.ndarray, palette: Palette, alpha: float = 0.5
) -> np.ndarray:
    """Blend coloured labels onto an image.

    Args:
        image: (H, W, 3) uint8.
        labels: (H, W) class indices, same size.
        alpha: Weight of the label colours.

    Returns:
        (H, W, 3) uint8.
    """
    colours = colorize(labels, palette).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return out.round().clip(0, 255).astype(np.uint8)


def heatmap(
    values: np.ndarray | torch.Tensor, vmax: float | None = None, cmap: str = "magma"
) -> np.ndarray:
    """A scalar map (e.g. entropy in nats) as a colour image; 0 maps to the colormap's low end.

    Args:
        values: (H, W) non-negative values.
        vmax: Value mapped to the top colour; default ``values.max()``.

    Returns:
        (H, W, 3) uint8.
    """
    import matplotlib

    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    vmax = float(values.max()) if vmax is None else float(vmax)
    norm = np.clip(values / max(vmax, 1e-8), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](norm)
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def tile(images: Sequence[np.ndarray], ncols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Arrange equally sized (H, W, 3) images in a grid with ``pad`` pixels between them."""
    if not images:
        raise ValueError("tile: no images")
    h, w = images[0].shape[:2]
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    grid = np.full(
        (nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), fill, np.uint8
    )
    for i, im in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return grid


def enlarge(image: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor, so that the longer side is >= ``min_side``.

    Every pixel becomes an f x f block (labels and heat-map values stay exact); an image whose
    longer side already reaches ``min_side`` is returned unchanged.

    Args:
        image: (H, W) or (H, W, C) array.
        min_side: Smallest longer side wanted, in pixels.

    Returns:
        (f * H, f * W[, C]) array with f = ceil(min_side / max(H, W)), at least 1.
    """
    longest = max(image.shape[0], image.shape[1])
    factor = max(1, math.ceil(min_side / max(longest, 1)))
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as an RGB PNG."""
    Image.fromarray(np.ascontiguousarray(image)).save(path)


def save_label_png(path: str | Path, labels: np.ndarray, palette: Palette) -> None:
    """Write class indices as a palette PNG: pixel values are the classes, colours the palette.

    Args:
        labels: (H, W) integers in 0..255.
    """
    im = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = [0] * (256 * 3)
    for i, rgb in enumerate(palette):
        flat[3 * i : 3 * i + 3] = [int(c) for c in rgb]
    im.putpalette(flat)
    im.save(path)


def validation_grid(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    hypotheses: Sequence[Sequence[np.ndarray]],
    entropy: Sequence[np.ndarray],
    palette: Palette,
    max_entropy: float,
    title: str = "",
) -> Any:
    """A matplotlib figure, one row per image: image | ground truth | prediction | hypotheses | entropy.

    Args:
        images: (H, W, 3) uint8 images.
        targets: (H, W) ground-truth labels.
        predictions: (H, W) deterministic predictions.
        hypotheses: Per image, a list of (H, W) sampled label maps.
        entropy: (H, W) predictive entropy in nats.
        max_entropy: Top of the entropy colour scale (``log K``).

    Returns:
        A ``matplotlib.figure.Figure`` (the caller saves and closes it).
    """
    from matplotlib.figure import Figure

    n = len(images)
    n_hyp = max((len(h) for h in hypotheses), default=0)
    ncols = 4 + n_hyp
    fig = Figure(figsize=(1.6 * ncols, 1.7 * n + (0.3 if title else 0)), dpi=100)
    axes = fig.subplots(n, ncols, squeeze=False)
    headers = ["image", "ground truth", "prediction"] + [f"sample {i + 1}" for i in range(n_hyp)]
    headers.append("entropy")
    for r in range(n):
        row = [images[r], colorize(targets[r], palette), colorize(predictions[r], palette)]
        row += [colorize(h, palette) for h in hypotheses[r]]
        row += [None] * (n_hyp - len(hypotheses[r]))
        row.append(heatmap(entropy[r], vmax=max_entropy))
        for c, im in enumerate(row):
            ax = axes[r, c]
            ax.set_axis_off()
            if im is not None:
                ax.imshow(im, interpolation="nearest")
            if r == 0:
                ax.set_title(headers[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: str | Path) -> None:
    """Save a matplotlib figure built with :class:`matplotlib.figure.Figure` (no pyplot state)."""
    fig.savefig(path)


# Keys plotted by plot_curves, in panel order; missing keys are skipped.
_CURVE_PANELS = (
    ("training loss", ("train/loss", "train/nll", "train/kl")),
    ("validation IoU / accuracy", ("val/mean_iou", "val/pixel_accuracy", "val/hm_iou")),
    ("validation NLL (nats / image)", ("val/nll", "val/nll_mc")),
    ("validation GED", ("val/ged",)),
)


def plot_curves(
    records: Sequence[dict[str, Any]],
    path: str | Path,
    train_records: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Plot training curves from ``metrics.jsonl`` (and ``train_log.jsonl``) records.

    Args:
        records: One dict per evaluation: ``{"step": int, "train": {...}, "val": {...}}``.
        path: PNG to write.
        train_records: Optional finer training-loss records ``{"step", "train": {...}}``; when
            given, the training panel uses them instead of the per-evaluation means.
    """
    from matplotlib.figure import Figure

    flat = [_flatten(r) for r in records]
    fine = [_flatten(r) for r in train_records or []]
    panels = []
    for title, keys in _CURVE_PANELS:
        source = fine if fine and keys[0].startswith("train/") else flat
        present = [k for k in keys if any(_finite(r.get(k)) for r in source)]
        if present:
            panels.append((title, present, source))
    if not panels:
        return
    fig = Figure(figsize=(4.2 * len(panels), 3.2), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, keys, source) in zip(axes, panels, strict=True):
        for key in keys:
            pts = [(r["step"], r[key]) for r in source if _finite(r.get(key))]
            xs, ys = zip(*pts, strict=True)
            ax.plot(
                xs,
                ys,
                marker="o" if len(pts) < 30 else None,
                markersize=3,
                label=key.split("/", 1)[1],
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    flat = {"step": record["step"]}
    for section in ("train", "val"):
        for k, v in (record.get(section) or {}).items():
            flat[f"{section}/{k}"] = v
    return flat


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
