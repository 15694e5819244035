"""NIfTI images and masks (``.nii``, ``.nii.gz``): 2D images and 3D volumes, read and written with nibabel.

nibabel is an optional dependency (``pip install -e ".[medical]"``); without it, reading or writing
a NIfTI file is a :class:`DataError` that names the file and the extra.

**Shapes.** A file holds a 2D image (X, Y) or a 3D volume (X, Y, Z); trailing axes of length 1 are
dropped first, so an (X, Y, 1) file is a 2D image. More axes (a time series, a vector image) are
an error naming the file. A volume is a stack of 2D slices along ``axis`` (``data.folder.nifti_axis``:
0, 1 or 2 for x, y, z).

**Orientation.** A slice whose remaining voxel axes are (a, b), in order ((x, y) for a 2D image or
a z slice), becomes an (H, W) = (b, a) picture: rows run along b and columns along a, as ITK and
SimpleITK arrays (so nnU-Net) and a viewer without reorientation show it. Predictions are written
back through the inverse mapping (:func:`volume_from_slices`), on the input's voxel grid, with its
affine and header.

**Intensities** (``data.folder.nifti_intensity``, :data:`INTENSITY_RULES`): one rule per file, over all of
its voxels (so every slice of a volume is scaled alike):

- ``percentile`` (default): clip to the 0.5th and 99.5th percentiles of the finite voxels, then
  scale that range to [0, 1] (robust to a few extreme voxels; MRI, CT);
- ``minmax``: scale the minimum .. maximum to [0, 1];
- ``none``: the stored values are 8-bit intensities already (0 .. 255, e.g. PNG slices converted
  to NIfTI); a value outside that range is an error naming the file.

The [0, 1] values become uint8 (x 255, rounded), repeated to three channels: the (H, W, 3) uint8
images every dataset returns, normalised by the transforms from there. Non-finite voxels take the
low end; a constant image becomes 0.

**Masks** hold integer labels (any integer or float type with integer values). A mask whose shape
or affine differs from its image's is an error naming the mask (:func:`check_same_grid`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from segcvae.data.files import NIFTI_EXTENSIONS, DataError, file_extension

AXIS_NAMES = "xyz"
INTENSITY_RULES = ("percentile", "minmax", "none")
SLICE_SELECTIONS = ("all", "foreground")
PERCENTILES = (0.5, 99.5)
# Percentiles of a large volume are estimated from this many evenly spaced voxels at most.
MAX_STAT_VOXELS = 10_000_000
# Largest difference between two affines (in the affine's units, usually mm) that is the same grid.
GRID_TOLERANCE = 1e-3
EXTRA_HINT = 'pip install -e ".[medical]" (or pip install nibabel)'


def is_nifti(path: str | Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names (any case)."""
    return file_extension(path) in NIFTI_EXTENSIONS


def import_nibabel(path: str | Path) -> ModuleType:
    """nibabel, or a DataError naming ``path`` and the ``medical`` extra that installs it."""
    try:
        import nibabel
    except ImportError:
        raise DataError(
            f"{path}: reading and writing NIfTI files needs nibabel, which is not installed: "
            f"{EXTRA_HINT}"
        ) from None
    return nibabel


class NiftiImage:
    """One NIfTI file: its header is read at once, its voxels when a slice or the volume is read.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Attributes:
        path: the file.
        image: the nibabel image (``Nifti1Image`` or ``Nifti2Image``).
        full_shape: the stored shape, e.g. (X, Y, 1).
        shape: the shape without trailing axes of length 1: (X, Y) or (X, Y, Z).

    Raises:
        DataError: nibabel is missing, the file is missing or unreadable, or it has more than three
            axes of length > 1.
    """

    def __init__(self, path: str | Path) -> None:
        nib = import_nibabel(path)
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: file not found")
        try:
            self.image = nib.load(str(self.path))
        except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as e:
            raise DataError(f"{self.path}: cannot read NIfTI file ({e})") from None
        self.full_shape = tuple(int(n) for n in self.image.shape)
        shape = self.full_shape
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise DataError(
                f"{self.path}: NIfTI data of shape {self.full_shape}; expected a 2D image (X, Y) "
                "or a 3D volume (X, Y, Z)"
            )
        self.shape: tuple[int, ...] = shape

    @property
    def ndim(self) -> int:
        """2 for an image, 3 for a volume."""
        return len(self.shape)

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) voxel-to-world matrix."""
        return np.asarray(self.image.affine, dtype=np.float64)

    @property
    def header(self) -> Any:
        """The nibabel header."""
        return self.image.header

    def num_slices(self, axis: int) -> int:
        """Slices along ``axis`` (1 for a 2D image)."""
        return 1 if self.ndim == 2 else self.shape[axis]

    def read(self, index: int | None = None, axis: int = 2) -> np.ndarray:
        """One picture: the 2D image, or slice ``index`` of the volume along ``axis``.

        Only that slice is read from a ``.nii`` file; a ``.nii.gz`` file is decompressed up to it.

        Returns:
            (H, W) array of the stored values (scaled by the header's slope and intercept, if any).

        Raises:
            DataError: a slice index for a 2D image, none (or one out of range) for a volume, or
                unreadable voxels.
        """
        where: list[Any] = [slice(None)] * len(self.shape) + [0] * (
            len(self.full_shape) - len(self.shape)
        )
        if self.ndim == 3:
            if index is None or not 0 <= index < self.shape[axis]:
                raise DataError(
                    f"{self.path}: slice {index} along axis {axis}; expected 0.."
                    f"{self.shape[axis] - 1} (the volume is {self.shape})"
                )
            where[axis] = index
        elif index not in (None, 0):
            raise DataError(f"{self.path}: slice {index} of a 2D image; expected none")
        try:
            plane = np.asanyarray(self.image.dataobj[tuple(where)])
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise DataError(f"{self.path}: cannot read the voxels ({e})") from None
        return plane.T  # (a, b) -> (H, W) = (b, a)

    def slice_of(self, volume: np.ndarray, index: int | None, axis: int = 2) -> np.ndarray:
        """:meth:`read`'s picture, taken from ``volume`` = :meth:`read_volume` already in memory."""
        plane = volume if self.ndim == 2 else np.take(volume, index, axis=axis)
        return plane.T

    def read_volume(self) -> np.ndarray:
        """All voxels, shape :attr:`shape` (voxel order, not transposed)."""
        try:
            data = np.asanyarray(self.image.dataobj)
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise DataError(f"{self.path}: cannot read the voxels ({e})") from None
        return data.reshape(self.shape)

    def slice_size(self, axis: int) -> tuple[int, int]:
        """(H, W) of the pictures :meth:`read` returns."""
        rest = [n for a, n in enumerate(self.shape) if self.ndim == 2 or a != axis]
        return rest[1], rest[0]


def check_axis(axis: int) -> int:
    """Return ``axis`` if it is 0, 1 or 2, else raise ValueError naming ``data.folder.nifti_axis``."""
    if axis not in (0, 1, 2) or isinstance(axis, bool):
        raise ValueError(f"data.folder.nifti_axis={axis!r}; expected 0, 1 or 2 (x, y, z)")
    return axis


def slice_name(index: int, axis: int, count: int) -> str:
    """``z012``: the axis letter and the slice index, zero-padded to at least three digits."""
    return f"{AXIS_NAMES[axis]}{index:0{max(3, len(str(count - 1)))}d}"


def intensity_range(data: np.ndarray, rule: str, path: str | Path) -> tuple[float, float]:
    """The stored values mapped to 0 and 1 by ``rule`` (see the module docstring).

    Args:
        data: all voxels of one file, any shape.
        rule: one of :data:`INTENSITY_RULES`.
        path: the file (named in errors).

    Raises:
        DataError: ``rule="none"`` and values outside 0..255.
        ValueError: an unknown rule.
    """
    if rule not in INTENSITY_RULES:
        raise ValueError(
            f"data.folder.nifti_intensity={rule!r}; expected one of {', '.join(INTENSITY_RULES)}"
        )
    values = np.asarray(data).ravel()
    if not np.issubdtype(values.dtype, np.integer):
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    if rule == "none":
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 255:
            raise DataError(
                f"{path}: intensities {low:g}..{high:g}; data.folder.nifti_intensity=none expects 8-bit "
                "values 0..255 (set data.folder.nifti_intensity=percentile or minmax to scale them)"
            )
        return 0.0, 255.0
    if rule == "minmax":
        return float(values.min()), float(values.max())
    if values.size > MAX_STAT_VOXELS:
        values = values[:: values.size // MAX_STAT_VOXELS + 1]
    low, high = np.percentile(values, PERCENTILES)
    return float(low), float(high)


def to_uint8(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip ``plane`` to [low, high], scale to [0, 255] and round.

    Returns:
        (H, W, 3) uint8: the grey picture repeated to three channels.
    """
    x = np.nan_to_num(np.asarray(plane, dtype=np.float64), nan=low, posinf=high, neginf=low)
    if high > low:
        grey = np.rint((np.clip(x, low, high) - low) * (255.0 / (high - low))).astype(np.uint8)
    else:
        grey = np.zeros(x.shape, np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def read_nifti_image(path: str | Path, intensity: str = "percentile") -> np.ndarray:
    """A 2D NIfTI image as (H, W, 3) uint8, scaled by the ``intensity`` rule.

    Raises:
        DataError: nibabel is missing, the file is unreadable, or it is a 3D volume.
    """
    image = NiftiImage(path)
    if image.ndim != 2:
        raise DataError(
            f"{path}: a 3D volume {image.shape}; expected a 2D image here (segcvae predict "
            "predicts a volume slice by slice along data.folder.nifti_axis; the folder dataset reads "
            "its slices as items)"
        )
    plane = image.read()
    return to_uint8(plane, *intensity_range(plane, intensity, path))


def integer_labels(values: np.ndarray, path: str | Path) -> np.ndarray:
    """Mask values as int64 labels; DataError naming ``path`` when some are not whole numbers."""
    values = np.asarray(values)
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    bad = ~np.isfinite(values)
    bad[~bad] = values[~bad] != np.round(values[~bad])
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:3])
        raise DataError(
            f"{path}: mask has non-integer values ({shown}, ...); expected integer class labels, "
            "or set data.folder.binary_threshold to read values >= the threshold as foreground"
        )
    return values.astype(np.int64)


def check_same_grid(image: NiftiImage, mask: NiftiImage) -> None:
    """Raise DataError naming the mask if its shape or affine differs from its image's."""
    if mask.shape != image.shape:
        raise DataError(
            f"{mask.path}: mask shape {mask.shape} differs from its image's {image.shape} "
            f"({image.path}); expected the same voxel grid"
        )
    diff = float(np.abs(mask.affine - image.affine).max())
    if diff > GRID_TOLERANCE:
        raise DataError(
            f"{mask.path}: mask affine differs from its image's ({image.path}) by up to {diff:.3g}; "
            "expected the same voxel grid (resample the mask onto the image first, e.g. with "
            "nibabel.processing.resample_from_to)"
        )


def volume_from_slices(
    slices: Sequence[np.ndarray], reference: NiftiImage, axis: int = 2
) -> np.ndarray:
    """The inverse of reading: (H, W) pictures, one per slice, -> an array of the file's shape.

    Args:
        slices: one picture for a 2D image, ``reference.num_slices(axis)`` for a volume.
        reference: the file the pictures were read from.
        axis: the slicing axis they were read along.

    Returns:
        Array of shape ``reference.full_shape``.
    """
    planes = [np.asarray(s).T for s in slices]  # (H, W) -> (a, b)
    if len(planes) != reference.num_slices(axis):
        raise ValueError(
            f"{len(planes)} slices for {reference.path}; expected {reference.num_slices(axis)}"
        )
    volume = planes[0] if reference.ndim == 2 else np.stack(planes, axis=axis)
    return volume.reshape(reference.full_shape)


def write_like(
    path: str | Path,
    data: np.ndarray,
    reference: NiftiImage,
    display_range: tuple[float, float],
    description: str = "",
) -> Path:
    """Write ``data`` as a NIfTI file with ``reference``'s affine and header (on its voxel grid).

    The header is the reference's with the data type of ``data``, no intensity scaling and the
    display range ``cal_min``, ``cal_max`` set to ``display_range``, so a viewer overlays the file
    on the scan.

    Args:
        path: output file (``.nii.gz`` compresses).
        data: array of shape ``reference.full_shape``.
        reference: the input file.
        display_range: (cal_min, cal_max).
        description: header ``descrip`` (at most 80 characters).

    Returns:
        ``path``.
    """
    nib = import_nibabel(path)
    if tuple(data.shape) != reference.full_shape:
        raise ValueError(f"data of shape {data.shape}; expected {reference.full_shape}")
    out = type(reference.image)(data, reference.affine, reference.header.copy())
    out.set_data_dtype(data.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    out.header["cal_min"], out.header["cal_max"] = display_range
    if description:
        out.header["descrip"] = description[:80].encode()
    nib.save(out, str(path))
    return Path(path)


__all__ = [
    "AXIS_NAMES",
    "INTENSITY_RULES",
    "SLICE_SELECTIONS",
    "NiftiImage",
    "check_axis",
    "check_same_grid",
    "import_nibabel",
    "integer_labels",
    "intensity_range",
    "is_nifti",
    "read_nifti_image",
    "slice_name",
    "to_uint8",
    "volume_from_slices",
    "write_like",
]
