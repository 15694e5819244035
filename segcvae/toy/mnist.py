"""MNIST from the standard idx files (gzip or raw), with nothing downloaded.

The idx format (LeCun et al.): a big-endian magic ``0x00 0x00 <dtype> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data. MNIST uses dtype ``0x08`` (uint8): images are
``(N, 28, 28)``, labels ``(N,)``. Written by hand because torchvision is not a dependency and the
reader is 40 lines; every failure is a :class:`ValueError` that names the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# idx dtype byte -> numpy big-endian dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# An MNIST digit is SIDE x SIDE pixels; the toy models see it flattened to NUM_PIXELS.
SIDE = 28
NUM_PIXELS = SIDE * SIDE
NUM_CLASSES = 10


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (gzip-compressed or raw, detected from its first bytes).

    Args:
        path: The file.

    Returns:
        The array with the shape and dtype the header declares (native byte order).

    Raises:
        ValueError: The file is missing, not gzip or idx, has a wrong magic number, or is truncated
            or too long; the message names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read idx file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated idx header ({len(raw)} bytes, ndim={ndim})")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: idx file {kind}: header says shape {shape} ({expected} bytes), "
            f"file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise ValueError(f"{root}: no MNIST file {stem}[.gz] (expected the standard idx file names)")


def load_mnist(root: str | Path, split: str) -> tuple[Tensor, Tensor]:
    """Load an MNIST split from its idx files.

    Args:
        root: Folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.
        split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).

    Returns:
        ``images`` uint8 (N, 28, 28) and ``labels`` int64 (N,).

    Raises:
        KeyError: Unknown split.
        ValueError: A file is missing, corrupt or inconsistent with the other.
    """
    if split not in _SPLIT_PREFIX:
        raise KeyError(f"unknown MNIST split {split!r}; valid: {sorted(_SPLIT_PREFIX)}")
    root = Path(root)
    prefix = _SPLIT_PREFIX[split]
    image_path = _find(root, f"{prefix}-images-idx3-ubyte")
    label_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path}: expected uint8 images (N, H, W), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"{label_path}: {labels.shape} labels do not match {len(images)} images in {image_path}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{label_path}: labels outside 0-9")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def binarize(images: Tensor, mode: str = "threshold", generator: torch.Generator | None = None):
    """Turn uint8 digits into float {0, 1} pixels.

    Args:
        images: uint8 (N, 28, 28) or float in [0, 1], any shape.
        mode: ``"threshold"`` (pixel > 0.5, deterministic) or ``"dynamic"`` (each pixel ~
            Bernoulli(intensity); pass a seeded ``generator`` for a fixed test set).
        generator: Random generator for ``"dynamic"``.

    Returns:
        float32 tensor of zeros and ones, same shape as ``images``.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    if mode == "threshold":
        return (x > 0.5).float()
    if mode == "dynamic":
        return torch.bernoulli(x, generator=generator)
    raise KeyError(f"unknown binarisation {mode!r}; valid: ['dynamic', 'threshold']")


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write an array in the idx format, the inverse of :func:`read_idx` (e.g. to cut a subset).

    Args:
        path: Output file; gzip-compressed when ``compress`` is True, or None and it ends in .gz.
        array: uint8, int8, int16, int32, float32 or float64 array with at least one dimension.
        compress: Force gzip on or off.
    """
    path = Path(path)
    codes = {dtype.str[1:]: code for code, dtype in _IDX_DTYPES.items()}
    kind = np.dtype(array.dtype).str[1:]
    if kind not in codes or array.ndim == 0:
        raise ValueError(f"{path}: cannot store a {array.dtype} array of shape {array.shape}")
    big = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder(">"))
    header = bytes([0, 0, codes[kind], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + big.tobytes()
    if compress or (compress is None and path.suffix == ".gz"):
        raw = gzip.compress(raw)
    path.write_bytes(raw)
