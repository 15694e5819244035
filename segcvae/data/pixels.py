"""Input images as every prediction path reads them: any array, PIL image or file -> (H, W, 3) uint8.

:func:`to_rgb` and :func:`load_image` are what :class:`segcvae.api.Predictor` (and so
``segcvae predict``, the demo page and the ONNX check) apply to their inputs; they are re-exported
by :mod:`segcvae.api`.

Pixel values: integer images are 0..255 (uint16: 0..65535, scaled to 8 bits); **float images
must hold values in [0, 1]** (a float array, a float TIFF, a PIL image of mode ``F``), as the
exported ONNX graphs expect. Float values outside [0, 1] and NaN or infinite values are an error
that names the range found and how to convert, never clipped: see :func:`check_float_pixels`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from segcvae.data.files import DataError, read_image

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

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
