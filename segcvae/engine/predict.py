"""Prediction on image files: which files to read, and the pictures written for each.

The prediction itself is :class:`segcvae.api.Predictor` (one implementation for the Python API,
``tools/predict.py``, the demo page and the ONNX check), whose per-image result is
:class:`segcvae.inference.PredictionResult`; this module only expands the inputs and writes the
outputs: :func:`predict_files` (``Predictor.predict_files``, ``segcvae predict``) reads the files a
batch at a time and writes the pictures of each. A NIfTI input (:func:`predict_nifti`) is
predicted slice by slice and also written back as NIfTI files on its voxel grid.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from segcvae import viz
from segcvae.data.files import DataError, file_extension, file_stem
from segcvae.data.folder import IMAGE_EXTENSIONS
from segcvae.data.pixels import load_image
from segcvae.engine.memory import check_memory
from segcvae.inference import PredictionResult

log = logging.getLogger("segcvae")


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
                f for f in p.iterdir() if f.is_file() and file_extension(f) in IMAGE_EXTENSIONS
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
GRID_TILE = 512  # longest side of a hypothesis in the samples grid


@dataclass
class FilesPrediction:
    """What :func:`predict_files` did.

    Attributes:
        written: Each input segmented, with the files written for it.
        failed: Each input that could not be read, with the one-line reason (naming the file).
    """

    written: dict[Path, list[Path]] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)


def predict_files(
    predictor: Any,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    samples: int = 8,
    seed: int | None = 0,
    on_error: Callable[[Path, str], None] | None = None,
) -> FilesPrediction:
    """Segment image files and write the pictures of each (:func:`write_prediction`) to ``out_dir``.

    Images are predicted ``predictor.batch_size`` at a time under one seed; a NIfTI input
    (:func:`predict_nifti`) slice by slice. Two inputs with the same name from different folders
    are written as ``<stem>`` and ``<stem>_1``. An input that cannot be read is recorded in
    ``failed`` (and passed to ``on_error`` at once) and the others are still done.

    Args:
        predictor: A :class:`segcvae.api.Predictor`.
        inputs: Files, folders (their images) or glob patterns (:func:`expand_inputs`).
        out_dir: Output folder (made if missing).
        samples: Hypotheses per image (>= 1).
        seed: Seed of the hypotheses (None: the global torch RNG).
        on_error: Called with each unreadable input and the reason, as it happens.

    Raises:
        segcvae.engine.memory.MemoryLimitError: ``samples`` hypotheses of a batch would not fit
            in memory (named ``samples``).
    """
    from segcvae.data.nifti import is_nifti

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = FilesPrediction()
    used: dict[str, int] = {}  # output stem -> inputs of that name so far
    batch: list[tuple[Path, str, np.ndarray]] = []
    with predictor.seeded(seed):  # one seed for the whole call
        for path in expand_inputs([str(p) for p in inputs]):
            try:
                if is_nifti(path):  # slice by slice, also written back as NIfTI
                    written = predict_nifti(predictor, path, out, _unique(path, used), samples)
                    done.written[path] = written
                    log.info("%s -> %s", path, ", ".join(p.name for p in written[-3:]))
                    continue
                image = load_image(path)
            except (DataError, OSError) as e:  # a DataError names the file
                done.failed[path] = str(e) if str(path) in str(e) else f"{path}: {e}"
                if on_error is not None:
                    on_error(path, done.failed[path])
                continue
            batch.append((path, _unique(path, used), image))
            if len(batch) == predictor.batch_size:
                _predict_batch(predictor, batch, out, samples, done)
        _predict_batch(predictor, batch, out, samples, done)
    return done


def _predict_batch(
    predictor: Any,
    batch: list[tuple[Path, str, np.ndarray]],
    out: Path,
    samples: int,
    done: FilesPrediction,
) -> None:
    """Predict the (path, stem, image) of ``batch``, write their pictures, and empty it."""
    if not batch:
        return
    h, w = (max(im.shape[i] for _, _, im in batch) for i in (0, 1))
    scale = min(1.0, GRID_TILE / max(h, w))
    grid = 2 * samples * round(h * scale) * round(w * scale) * 3  # the tiles and the grid, RGB
    what = f"the samples grid of {samples} hypotheses of an image of {h}x{w}"
    check_memory(grid, "samples", samples, what)
    preds = predictor.predict_arrays([im for _, _, im in batch], samples=samples)
    for (path, stem, image), pred in zip(batch, preds, strict=True):
        written = write_prediction(out, stem, image, pred, predictor.palette, predictor.num_classes)
        done.written[path] = written
        log.info("%s -> %s", path, ", ".join(p.name for p in written))
    batch.clear()


def _unique(path: Path, used: dict[str, int]) -> str:
    """The output stem of ``path``, numbered when an earlier input had the same name."""
    stem = input_stem(path)
    if stem in used:  # same name from different folders: keep both
        used[stem] += 1
        return f"{stem}_{used[stem]}"
    used[stem] = 0
    return stem


def hypotheses_grid(
    pred: PredictionResult, palette: list[list[int]], max_tile: int = GRID_TILE, min_tile: int = 0
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


def input_stem(path: Path) -> str:
    """The stem of the output files of an input: ``scan.nii.gz`` -> ``scan``, ``a.png`` -> ``a``."""
    return file_stem(path)


NIFTI_OUTPUT_KINDS = ("mask", "foreground", "uncertainty")


def predict_nifti(
    predictor: Any,
    path: Path,
    out_dir: Path,
    stem: str,
    samples: int,
) -> list[Path]:
    """Predict a NIfTI image or volume and write the pictures and NIfTI files of the prediction.

    A 3D volume is predicted slice by slice along the checkpoint's ``data.folder.nifti_axis``, its
    intensities scaled by its ``data.folder.nifti_intensity`` (as in training); a 2D image is one slice.
    Each slice gets the pictures of :func:`write_prediction` (stem ``<stem>`` for a 2D image,
    ``<stem>_z012`` for slice 12 of a volume along z), and the whole input three NIfTI files with
    its shape, affine and header, which a viewer overlays on the scan:
    ``<stem>_mask.nii.gz`` (uint8 class indices), ``<stem>_foreground.nii.gz`` (float32 fraction
    of the hypotheses that are not background) and ``<stem>_uncertainty.nii.gz`` (float32
    entropy in nats).

    Args:
        predictor: A :class:`segcvae.api.Predictor` (its ``config``, ``batch_size``, ``palette``,
            ``num_classes`` and ``predict_arrays`` are used).
        path: The ``.nii`` / ``.nii.gz`` input.
        out_dir: Existing output folder.
        stem: Output file stem (:func:`input_stem`).
        samples: Hypotheses per slice.

    Returns:
        The written paths: the pictures, slice by slice, then the three NIfTI files.

    Raises:
        segcvae.data.DataError: nibabel is missing or the file is not a readable 2D / 3D NIfTI.
    """
    from segcvae.config import DataConfig
    from segcvae.data.nifti import (
        NiftiImage,
        intensity_range,
        slice_name,
        to_uint8,
        volume_from_slices,
        write_like,
    )

    cfg = predictor.config.data if predictor.config is not None else DataConfig()
    nifti = cfg.settings("folder")  # the folder dataset's NIfTI settings (defaults elsewhere)
    axis = nifti.nifti_axis
    volume = NiftiImage(path)
    n = volume.num_slices(axis)
    values = volume.read_volume()  # once: slice reads from a .nii.gz decompress from its start
    low, high = intensity_range(values, nifti.nifti_intensity, path)
    indices: list[int | None] = [None] if volume.ndim == 2 else list(range(n))
    maps: dict[str, list[np.ndarray]] = {kind: [] for kind in NIFTI_OUTPUT_KINDS}
    written: list[Path] = []
    for start in range(0, len(indices), predictor.batch_size):
        chunk = indices[start : start + predictor.batch_size]
        images = [to_uint8(volume.slice_of(values, k, axis), low, high) for k in chunk]
        preds = predictor.predict_arrays(images, samples=samples)
        for k, image, pred in zip(chunk, images, preds, strict=True):
            name = stem if k is None else f"{stem}_{slice_name(k, axis, n)}"
            written += write_prediction(
                out_dir, name, image, pred, predictor.palette, predictor.num_classes
            )
            maps["mask"].append(pred.mask)
            maps["foreground"].append(pred.foreground_frequency.astype(np.float32))
            maps["uncertainty"].append(pred.entropy.astype(np.float32))
    ranges = {
        "mask": (0.0, float(predictor.num_classes - 1)),
        "foreground": (0.0, 1.0),
        "uncertainty": (0.0, float(np.log(max(predictor.num_classes, 2)))),
    }
    for kind in NIFTI_OUTPUT_KINDS:
        data = volume_from_slices(maps[kind], volume, axis)
        target = out_dir / f"{stem}_{kind}.nii.gz"
        written.append(write_like(target, data, volume, ranges[kind], f"segcvae {kind}"))
    return written
