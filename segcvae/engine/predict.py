"""Prediction on image files: which files to read, and the pictures written for each.

The prediction itself is :class:`segcvae.api.Predictor` (one implementation for the Python API,
``tools/predict.py``, the demo page and the ONNX check); this module only expands the inputs and
writes the outputs.
"""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from segcvae import viz
from segcvae.api import PredictionResult
from segcvae.data.folder import IMAGE_EXTENSIONS


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files, folders (their image files, sorted) and glob patterns -> a list of paths.

    A name that is neither an existing file, a folder nor a matching glob is kept, so that the
    caller reports it as unreadable.
    """
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            out += sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
        elif p.exists():
            out.append(p)
        elif any(ch in pattern for ch in "*?["):
            out += sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
        else:
            out.append(p)
    unique: dict[Path, Path] = {}  # the same file named twice (folder + glob) is done once
    for p in out:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


OUTPUT_KINDS = ("mask", "overlay", "samples", "uncertainty", "foreground")


def hypotheses_grid(
    pred: PredictionResult, palette: list[list[int]], max_tile: int = 512, min_tile: int = 0
) -> np.ndarray:
    """The hypotheses (or the mask when there are none) as a colour grid.

    A map longer than ``max_tile`` pixels is shrunk to it (nearest-neighbour resizing keeps the
    labels); one shorter than ``min_tile`` is enlarged by a whole factor until it reaches it
    (:func:`segcvae.viz.enlarge`, for a screen; 0, the default, keeps the written files' sizes).
    """
    maps = pred.hypotheses if len(pred.hypotheses) else pred.mask[None]
    h, w = maps.shape[1:]
    scale = min(1.0, max_tile / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    tiles = [
        viz.enlarge(
            viz.colorize(
                m
                if (th, tw) == (h, w)
                else cv2.resize(m, (tw, th), interpolation=cv2.INTER_NEAREST),
                palette,
            ),
            min(min_tile, max_tile),
        )
        for m in maps
    ]
    return viz.tile(tiles, ncols=int(np.ceil(np.sqrt(len(tiles)))))


def foreground_png(pred: PredictionResult) -> np.ndarray:
    """``foreground_frequency`` as 8-bit grayscale (H, W): value v means a fraction v / 255 of the
    hypotheses are not background at that pixel (0 black: never, 255 white: always)."""
    return np.rint(np.clip(pred.foreground_frequency, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_prediction(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    pred: PredictionResult,
    palette: list[list[int]],
    num_classes: int,
) -> list[Path]:
    """Write the pictures of one prediction.

    Files: ``<stem>_mask.png`` (palette PNG whose pixel values are the class indices, at the
    image's size), ``_overlay.png`` (mask blended on the image), ``_samples.png`` (grid of the
    hypotheses), ``_uncertainty.png`` (entropy heat map, 0 to log K nats) and ``_foreground.png``
    (8-bit grayscale foreground frequency over the hypotheses, see :func:`foreground_png`).

    Args:
        out_dir: Existing output folder.
        stem: File name stem.
        image: (H, W, 3) uint8 RGB input.
        pred: Its prediction.
        palette: One RGB colour per class.
        num_classes: K (top of the entropy scale).

    Returns:
        The written paths, in the order above.
    """
    paths = [out_dir / f"{stem}_{kind}.png" for kind in OUTPUT_KINDS]
    viz.save_label_png(paths[0], pred.mask, palette)
    viz.save_png(paths[1], viz.overlay(image, pred.mask, palette))
    viz.save_png(paths[2], hypotheses_grid(pred, palette))
    viz.save_png(paths[3], viz.heatmap(pred.entropy, vmax=float(np.log(max(num_classes, 2)))))
    Image.fromarray(foreground_png(pred)).save(paths[4])  # (H, W) uint8 -> mode "L"
    return paths
