"""Reading images, masks and list files, with errors that name the file and what was expected.

Decoding uses OpenCV (``cv2.imdecode``), the fastest decoder available here; everything else is
vectorised numpy (no per-pixel Python loops).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


class DataError(ValueError):
    """A data file is missing, unreadable or not what was expected; the message names the file."""


_JPEG_EXTS = {".jpg", ".jpeg", ".jpe", ".jfif"}

# Extensions of more than one dot that name one format: the stem of ``case01.nii.gz`` is ``case01``.
MULTI_DOT_EXTENSIONS = (".nii.gz",)
NIFTI_EXTENSIONS = (".nii", ".nii.gz")


def file_extension(path: str | Path) -> str:
    """The lower-case extension of a file name, ``.nii.gz`` counted as one (``.png``, ``.nii.gz``)."""
    name = Path(path).name.lower()
    for ext in MULTI_DOT_EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return Path(name).suffix


def file_stem(path: str | Path) -> str:
    """The file name without :func:`file_extension` (``case01.nii.gz`` -> ``case01``)."""
    name = Path(path).name
    return name[: len(name) - len(file_extension(name))]


def _read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e})") from e
    if not data:
        raise DataError(f"{path}: file is empty")
    return data


def _decode(path: Path, data: bytes) -> np.ndarray:
    # OpenCV >= 5 rejects truncated JPEGs, but libjpeg in older builds only warns and returns a
    # grey-filled image, so check the end-of-image marker (JPEG entropy data never contains FFD9).
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise DataError(
            f"{path}: truncated JPEG (no end-of-image marker); expected a complete image"
        )
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise DataError(f"{path}: cannot decode image (corrupt, truncated or unsupported format)")
    return array


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype in (np.float32, np.float64):  # e.g. float TIFF in [0, 1]
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    raise DataError(f"{path}: unsupported pixel type {array.dtype}; expected 8- or 16-bit")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale images are repeated to three channels, an alpha channel is dropped and 16-bit images
    are scaled to 8 bits. A 2D NIfTI image (``.nii``, ``.nii.gz``; needs nibabel) is read with
    :func:`segcvae.data.nifti.read_nifti_image` (intensities scaled by the ``percentile`` rule); a
    3D volume is an error (``segcvae predict`` predicts volumes slice by slice).

    Args:
        path: image file (any format OpenCV reads: JPEG, PNG, PPM, BMP, TIFF, WebP, ...; or NIfTI).

    Returns:
        Image, shape (H, W, 3), uint8, RGB order.

    Raises:
        DataError: the file is missing, empty, truncated, corrupt or has an unsupported layout.
    """
    path = Path(path)
    if file_extension(path) in NIFTI_EXTENSIONS:
        from segcvae.data.nifti import read_nifti_image

        return read_nifti_image(path)
    array = _to_uint8(_decode(path, _read_bytes(path)), path)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB)
    channels = array.shape[2]
    if channels == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(f"{path}: image has {channels} channels; expected 1, 3 or 4")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a label image without changing its values.

    Args:
        path: mask file; lossless formats (PNG, PPM, BMP, TIFF) are expected.

    Returns:
        (H, W) array of the stored values (uint8 or uint16) for a single-channel file, or
        (H, W, 3) uint8 RGB for a colour file (alpha dropped).

    Raises:
        DataError: the file is missing, unreadable or has an unsupported layout.
    """
    path = Path(path)
    array = _decode(path, _read_bytes(path))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        if array.dtype not in (np.uint8, np.uint16):
            raise DataError(f"{path}: mask has pixel type {array.dtype}; expected 8- or 16-bit")
        return array
    if array.shape[2] in (3, 4):
        array = _to_uint8(array, path)
        code = cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGB
        return cv2.cvtColor(array, code)
    raise DataError(f"{path}: mask has {array.shape[2]} channels; expected 1 or 3")


def colours_to_index(
    rgb: np.ndarray,
    palette: Sequence[Sequence[int]],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    tolerance: int = 0,
) -> np.ndarray:
    """Map an RGB label image to class indices.

    Args:
        rgb: label image, shape (H, W, 3), uint8.
        palette: one RGB colour per class; class k has colour ``palette[k]``.
        path: the file ``rgb`` came from (named in errors).
        class_names: names shown next to the colours in errors.
        tolerance: 0 accepts the exact colours only; > 0 maps a pixel to the nearest palette colour
            if its largest per-channel difference from it is at most ``tolerance`` (for JPEG-noisy
            copies of label images).

    Returns:
        Class indices, shape (H, W), uint8.

    Raises:
        DataError: some pixel matches no palette colour; the message names the file, the
            offending colours with their pixel counts, and the expected colours.
    """
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(pal) > 255:
        raise ValueError(f"at most 255 classes are supported, got a palette of {len(pal)}")
    if len({tuple(c) for c in pal.tolist()}) != len(pal):
        raise ValueError(f"palette {pal.tolist()} repeats a colour; expected one colour per class")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if tolerance <= 0:
        # Pack each pixel into one uint32 (R, G, B, 255) and compare with the K packed colours:
        # K whole-array comparisons, about 0.15 ms for a 250x250 LFW mask with K = 3.
        codes = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA).view(np.uint32)[..., 0]  # (H, W)
        pal_codes = cv2.cvtColor(pal[None], cv2.COLOR_RGB2RGBA).view(np.uint32)[0, :, 0]  # (K,)
        index = np.zeros(rgb.shape[:2], np.uint8)
        matched = 0
        for k, code in enumerate(pal_codes):
            hit = codes == code
            matched += np.count_nonzero(hit)
            if k:
                np.copyto(index, np.uint8(k), where=hit)
        # palette colours are distinct, so the hits are disjoint and count each pixel once
        unmatched = np.isin(codes, pal_codes, invert=True) if matched < index.size else None
    else:
        dist = np.abs(rgb[:, :, None, :].astype(np.int16) - pal[None, None].astype(np.int16))
        dist = dist.max(-1)  # (H, W, K)
        index = dist.argmin(-1).astype(np.uint8)  # (H, W)
        unmatched = dist.min(-1) > tolerance
    if unmatched is not None and unmatched.any():
        colours, counts = np.unique(rgb[unmatched], axis=0, return_counts=True)
        order = np.argsort(-counts)[:5]
        found = ", ".join(f"{tuple(int(v) for v in colours[i])} x{counts[i]}" for i in order)
        names = list(class_names) if class_names is not None else [str(k) for k in range(len(pal))]
        expected = ", ".join(
            f"{n} {tuple(int(v) for v in c)}" for n, c in zip(names, pal, strict=False)
        )
        hint = (
            "set data.colour_tolerance to map near colours to the nearest one"
            if tolerance <= 0
            else f"data.colour_tolerance={tolerance} is too small for them"
        )
        raise DataError(
            f"{path}: {int(unmatched.sum())} pixels have an unknown label colour "
            f"({len(colours)} distinct; most frequent: {found}); expected one of {expected} "
            f"({hint})"
        )
    return index


def read_id_list(path: str | Path) -> list[str]:
    """Read a list file of item names, one per line (blank lines and ``#`` comments ignored).

    Raises:
        DataError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    lines = path.read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


__all__ = [
    "NIFTI_EXTENSIONS",
    "DataError",
    "colours_to_index",
    "file_extension",
    "file_stem",
    "read_id_list",
    "read_image",
    "read_mask",
]
