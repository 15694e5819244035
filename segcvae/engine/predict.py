"""Prediction on image files of any size: masks at the original size, hypotheses, uncertainty."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segcvae import viz
from segcvae.inference import predict_probs, sample_probs, uncertainty

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


@dataclass
class Prediction:
    """One image's prediction at its original size (H, W).

    Attributes:
        mask: (H, W) uint8 class indices of the deterministic prediction.
        hypotheses: (S, h, w) uint8 sampled label maps (``h, w`` at most ``max_tile`` on a side).
        entropy: (H, W) float32 entropy of the mean sampled prediction, in nats.
    """

    mask: np.ndarray
    hypotheses: np.ndarray
    entropy: np.ndarray


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
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
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


@torch.no_grad()
def predict_image(
    model: nn.Module, image: np.ndarray, transform: Any, n_samples: int = 8, max_tile: int = 512
) -> Prediction:
    """Predict one image.

    Args:
        model: A segcvae model in eval mode.
        image: (H, W, 3) uint8 RGB.
        transform: The evaluation transform (albumentations: resize, normalise, to tensor).
        n_samples: Hypotheses to draw (0: only the deterministic prediction).
        max_tile: Longest side of each hypothesis in the returned ``hypotheses``.
    """
    device = next(model.parameters()).device
    h, w = image.shape[:2]
    x = transform(image=image)["image"].unsqueeze(0).to(device)  # (1, 3, s, s)
    probs = predict_probs(model, x, "deterministic")  # (1, K, s, s)
    mask = F.interpolate(probs.float(), size=(h, w), mode="bilinear", align_corners=False).argmax(
        1
    )[0]
    if n_samples > 0:
        sp = sample_probs(model, x, n_samples)  # (1, S, K, s, s)
        ent = uncertainty(sp)["entropy"]  # (1, s, s)
        hyps = sp[0].argmax(dim=1, keepdim=True).float()  # (S, 1, s, s)
    else:
        p = probs.float().clamp_min(1e-12)
        ent = -(p * p.log()).sum(1)
        hyps = probs.argmax(dim=1, keepdim=True).float()
    scale = min(1.0, max_tile / max(h, w))
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    hyps = F.interpolate(hyps, size=(th, tw), mode="nearest")[:, 0]
    ent = F.interpolate(ent[None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    return Prediction(
        mask=mask.to(torch.uint8).cpu().numpy(),
        hypotheses=hyps.to(torch.uint8).cpu().numpy(),
        entropy=ent.clamp_min(0).cpu().numpy(),
    )


def write_prediction(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    pred: Prediction,
    palette: list[list[int]],
    num_classes: int,
) -> list[Path]:
    """Write ``<stem>_mask.png`` (palette PNG of class indices), ``_overlay``, ``_samples``, ``_uncertainty``."""
    paths = [
        out_dir / f"{stem}_{kind}.png" for kind in ("mask", "overlay", "samples", "uncertainty")
    ]
    viz.save_label_png(paths[0], pred.mask, palette)
    viz.save_png(paths[1], viz.overlay(image, pred.mask, palette))
    tiles = [viz.colorize(h, palette) for h in pred.hypotheses]
    viz.save_png(paths[2], viz.tile(tiles, ncols=int(np.ceil(np.sqrt(len(tiles))))))
    viz.save_png(paths[3], viz.heatmap(pred.entropy, vmax=float(np.log(max(num_classes, 2)))))
    return paths
