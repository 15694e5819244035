"""One-call Python API: ``segcvae.load(ckpt)(image)`` -> masks, hypotheses and uncertainty.

::

    import segcvae

    predictor = segcvae.load("runs/default/best.pt", device="auto")
    result = predictor("face.jpg", samples=16)
    result.mask                # (H, W) uint8 class indices at the image's original size
    result.hypotheses          # (16, H, W) uint8 sampled label maps
    result.entropy             # (H, W) float32 uncertainty in nats

Every image is resized to the model's input size (``data.image_size`` of the checkpoint's
config), predicted there, and the probabilities are resized back (bilinear) to the image's own
size before taking the arg-max, so any size and aspect ratio works. ``tools/predict.py``,
``segcvae demo`` and the ONNX check all go through :class:`Predictor`.

Pixel values: integer images are 0..255 (uint16: 0..65535, scaled to 8 bits); **float images
must hold values in [0, 1]** (a float array, a float TIFF, a PIL image of mode ``F``), as the
exported ONNX graphs expect. Float values outside [0, 1] (e.g. ``np.asarray(img, np.float32)``
of an 8-bit image, 0..255) and NaN or infinite values are an error that names the range found
and how to convert, never clipped: see :func:`check_float_pixels`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segcvae.inference import BACKGROUND, PredictionResult  # re-exported: segcvae.api's result

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL.Image import Image as PILImage
    from torch import nn

    ImageLike = np.ndarray | str | os.PathLike | PILImage


FLOAT_RANGE = (0.0, 1.0)  # the only range float pixels may have (ONNX graphs take the same)


def check_float_pixels(array: np.ndarray, what: str) -> None:
    """Refuse float pixels that are not finite or lie outside [0, 1] (nothing is clipped).

    Args:
        array: Float pixel values, any shape.
        what: How the message names the input (a file name, ``image array of type float32``).

    Raises:
        segcvae.data.DataError: One line naming ``what``, the range (or count of bad values)
            found and how to convert: values up to 255 look like 8-bit pixels (divide by 255),
            up to 65535 like 16-bit ones (divide by 65535).
    """
    from segcvae.data import DataError

    if array.size == 0:
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise DataError(
            f"{what} has {bad} NaN or infinite pixel value(s) of {array.size}; expected finite "
            "values in [0, 1]"
        )
    lo, hi = float(array.min()), float(array.max())
    if lo >= FLOAT_RANGE[0] and hi <= FLOAT_RANGE[1]:
        return
    if lo >= 0 and hi <= 255:
        hint = "these look like 8-bit values: divide by 255 (or pass the uint8 image)"
    elif lo >= 0 and hi <= 65535:
        hint = "these look like 16-bit values: divide by 65535 (or pass the uint16 image)"
    elif lo < 0:
        hint = "negative values look normalised: pass the image before any mean / std step"
    else:
        hint = "rescale them to [0, 1]"
    raise DataError(f"{what} has values {lo:.4g}..{hi:.4g}; float pixels must be in [0, 1]: {hint}")


# Files that OpenCV may decode to float pixels: TIFF (both byte orders, classic and big),
# PFM, Radiance HDR, OpenEXR.
_FLOAT_FORMATS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"PF", b"Pf", b"#?", b"v/1\x01")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as every prediction path reads it: (H, W, 3) uint8 RGB.

    :func:`segcvae.data.read_image`, then :func:`check_float_file` (a float TIFF of 0..255
    values is an error, not clipped).

    Raises:
        segcvae.data.DataError: Naming the file: missing, not an image, or float pixels outside
            [0, 1] or not finite.
    """
    from segcvae.data import read_image

    with np.errstate(invalid="ignore"):  # NaN pixels of a float file: refused just below
        image = read_image(Path(path))  # every file-level error, naming the file
    check_float_file(path)
    return image


def check_float_file(path: str | os.PathLike) -> None:
    """Apply :func:`check_float_pixels` to an image file that holds float pixels.

    Only files whose first bytes are those of a format OpenCV may decode to floats (TIFF, PFM,
    Radiance HDR, OpenEXR) are decoded again; the others return at once.

    Raises:
        segcvae.data.DataError: ``<path>: float32 image has values ...`` (see
            :func:`check_float_pixels`).
    """
    import cv2

    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(_FLOAT_FORMATS):
        return
    raw = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is not None and np.issubdtype(raw.dtype, np.floating):
        check_float_pixels(raw, f"{path}: {raw.dtype} image")


def to_rgb(image: ImageLike) -> np.ndarray:
    """Any supported image input -> (H, W, 3) uint8 RGB.

    Args:
        image: A NumPy array (H, W) / (H, W, 1) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA
            (uint8; uint16 is scaled to 8 bits; float must be in [0, 1] and is scaled to
            0..255), a path to an image file (see :func:`load_image`), or a PIL image.

    Raises:
        segcvae.data.DataError: The input is not an image of a supported layout, or has float
            pixels outside [0, 1] or not finite (the message says what was received and what
            is expected).
    """
    from segcvae.data import DataError

    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with matplotlib
            Image = None  # type: ignore[assignment]
        if Image is not None and isinstance(image, Image.Image):
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit files open as these
                image = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
            elif image.mode == "F":  # float pixels: the [0, 1] rule (convert("RGB") would clip)
                image = np.asarray(image)
            else:
                return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
        else:
            raise DataError(
                f"cannot use an input of type {type(image).__name__} as an image; expected a "
                "NumPy array (H, W[, 1|3|4]), a path or a PIL image"
            )
    array = image
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(
                f"image array of type {array.dtype} has values outside 0..255; expected 8-bit pixels"
            )
        array = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        check_float_pixels(array, f"image array of type {array.dtype}")
        array = np.rint(array * 255.0).astype(np.uint8)
    if array.dtype != np.uint8:
        raise DataError(
            f"image array has pixel type {array.dtype}; expected uint8 (or uint16, or float in 0..1)"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DataError(
            f"image array has shape {tuple(array.shape)}; expected (H, W), (H, W, 1), (H, W, 3) "
            "RGB or (H, W, 4) RGBA"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise DataError(f"image array has shape {tuple(array.shape)}; expected a non-empty image")
    return np.ascontiguousarray(array[:, :, :3])


class Predictor:
    """A trained model ready to segment images of any size.

    Build one with :meth:`from_checkpoint` (or ``segcvae.load``); call it on an image or a list.

    Args:
        model: A segcvae model (any family: ``encode`` / ``decode_mean`` / ``decode_samples``),
            in eval mode, on the device to run on.
        transform: The evaluation transform (``build_transforms(cfg.data, "test")``): resize to
            the model's input size, normalise, to tensor.
        class_names: The K class names.
        palette: One RGB colour per class (for pictures).
        config: The checkpoint's :class:`segcvae.config.Config`, if known.
        batch_size: Images per forward pass when called on a list.
    """

    def __init__(
        self,
        model: nn.Module,
        transform: Any,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        config: Any = None,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.transform = transform
        self.class_names = [str(n) for n in class_names]
        self.palette = [[int(c) for c in rgb] for rgb in palette]
        self.config = config
        # eval.hypothesis_masks of the checkpoint's config: how hypotheses become masks
        self.hypothesis_masks = getattr(getattr(config, "eval", None), "hypothesis_masks", "mode")
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | dict[str, Any],
        device: str = "cpu",
        overrides: Sequence[str] | None = None,
        batch_size: int = 8,
    ) -> Predictor:
        """Load a checkpoint written by training.

        Args:
            path: ``best.pt`` / ``last.pt`` of a run folder, or a checkpoint dict already read
                with :func:`segcvae.engine.checkpoint.load_checkpoint`.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
            overrides: ``section.key=value`` changes to the stored config.
            batch_size: Images per forward pass for lists.

        Raises:
            segcvae.engine.checkpoint.CheckpointError: The file is missing or not a checkpoint.
            RuntimeError: ``device`` asks for CUDA and none is available.
        """
        from segcvae.data import build_transforms
        from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
        from segcvae.engine.distributed import resolve_device

        target = resolve_device(device, key="device")
        ckpt = path if isinstance(path, dict) else load_checkpoint(path)
        model, cfg = model_from_checkpoint(ckpt, target, list(overrides or []))
        meta = ckpt["meta"]
        return cls(
            model,
            build_transforms(cfg.data, "test"),
            meta["class_names"],
            meta["palette"],
            config=cfg,
            batch_size=batch_size,
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.class_names)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB images -> the model's input batch (B, 3, s, s) on the device."""
        import torch

        x = torch.stack([self.transform(image=im)["image"] for im in images])
        return x.to(self.device)

    def __call__(
        self,
        image: ImageLike | Sequence[ImageLike],
        samples: int = 16,
        seed: int | None = None,
    ) -> PredictionResult | list[PredictionResult]:
        """Segment one image or a list of images.

        Args:
            image: One image (NumPy array, path or PIL image; see :func:`to_rgb`) or a list.
            samples: S, hypotheses drawn per image (0: only the deterministic prediction).
            seed: Seed of the hypotheses (the global torch RNG is left as it was); None draws
                from the global torch RNG.

        Returns:
            A :class:`PredictionResult` for one image, a list of them for a list.
        """
        if isinstance(image, (list, tuple)):
            arrays = [to_rgb(im) for im in image]
            return self.predict_arrays(arrays, samples=samples, seed=seed)
        return self.predict_arrays([to_rgb(image)], samples=samples, seed=seed)[0]

    def predict_arrays(
        self, images: Sequence[np.ndarray], samples: int = 16, seed: int | None = None
    ) -> list[PredictionResult]:
        """Segment (H, W, 3) uint8 RGB images (sizes may differ), ``batch_size`` at a time."""
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        results: list[PredictionResult] = []
        with self.seeded(seed):
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                results += self._predict_batch(chunk, samples)
        return results

    @contextlib.contextmanager
    def seeded(self, seed: int | None) -> Iterator[None]:
        """Within the block, torch's RNG (CPU and this device) starts from ``seed``; the previous
        state is restored afterwards. ``None``: the global RNG is used as it is."""
        import torch

        device = self.device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield

    def _predict_batch(self, images: Sequence[np.ndarray], samples: int) -> list[PredictionResult]:
        import torch
        import torch.nn.functional as F

        from segcvae.inference import entropy, hypothesis_uniforms, uncertainty

        with torch.inference_mode():
            x = self.preprocess(images)  # (B, 3, s, s)
            ctx = self.model.encode(x)
            probs = self.model.decode_mean(ctx).float().softmax(dim=1)  # (B, K, s, s)
            sampled = None
            if samples > 0:
                sampled = self.model.decode_samples(ctx, samples).float().softmax(dim=2)
                maps = uncertainty(sampled)  # each (B, s, s)
                ent, mutual = maps["entropy"], maps["mutual_information"]
                if self.hypothesis_masks == "level_set":  # one level per hypothesis
                    levels = hypothesis_uniforms(len(images), samples, sampled.device)
                else:
                    levels = None
            else:
                ent = entropy(probs, dim=1)
                mutual = torch.zeros_like(ent)
            out = []
            for i, image in enumerate(images):
                size = tuple(image.shape[:2])

                def up(t: torch.Tensor, size: tuple[int, ...] = size) -> torch.Tensor:
                    # (N, C, s, s) -> (N, C, H, W), bilinear as for the mask
                    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

                p_full = up(probs[i : i + 1])[0]  # (K, H, W)
                mask = p_full.max(dim=0).indices.to(torch.uint8)  # = argmax, 10x faster on CPU
                if sampled is not None:
                    # one hypothesis at a time keeps the memory at K x H x W floats
                    hyps = torch.stack(
                        [_mask(up(sampled[i, j : j + 1])[0], levels, i, j) for j in range(samples)]
                    )  # (S, H, W)
                    fg = (hyps != BACKGROUND).float().mean(dim=0)
                else:
                    hyps = mask.new_zeros((0, *size))
                    fg = (mask != BACKGROUND).float()
                maps2 = up(torch.stack([ent[i], mutual[i]])[:, None])[:, 0].clamp_min(0)
                out.append(
                    PredictionResult(
                        mask=mask.cpu().numpy(),
                        probs=p_full.cpu().numpy().astype(np.float32, copy=False),
                        hypotheses=hyps.cpu().numpy(),
                        entropy=maps2[0].cpu().numpy(),
                        mutual_information=maps2[1].cpu().numpy(),
                        foreground_frequency=fg.cpu().numpy(),
                        class_names=list(self.class_names),
                    )
                )
        return out


def _mask(probs: Any, levels: Any, i: int, j: int) -> Any:
    """Hypothesis j of image i as a uint8 mask from its probabilities (K, H, W): the likeliest
    class per pixel, or with ``levels`` (B, S) its level set at ``levels[i, j]``."""
    import torch

    from segcvae.inference import level_set_labels

    if levels is None:
        return probs.max(dim=0).indices.to(torch.uint8)  # = argmax, 10x faster on CPU
    return level_set_labels(probs, levels[i, j]).to(torch.uint8)


def load(path: str | Path, device: str = "cpu", **kwargs: Any) -> Predictor:
    """``Predictor.from_checkpoint(path, device, ...)``: a checkpoint ready to segment images."""
    return Predictor.from_checkpoint(path, device=device, **kwargs)


__all__ = [
    "BACKGROUND",
    "FLOAT_RANGE",
    "PredictionResult",
    "Predictor",
    "check_float_file",
    "check_float_pixels",
    "load",
    "load_image",
    "to_rgb",
]
