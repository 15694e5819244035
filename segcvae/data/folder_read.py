"""The folder dataset's reading: an item's image and rater masks, NIfTI slices, label values.

:class:`FolderReading` is the part of :class:`segcvae.data.folder.FolderDataset` that reads what
the index found: 3D NIfTI volumes sliced into items, masks turned into class indices (index,
RGB or thresholded binary masks), a mask of another size resized or reported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from segcvae.data.base import Sample
from segcvae.data.files import (
    DataError,
    colours_to_index,
    read_image,
    read_mask,
)
from segcvae.data.folder_index import picture_size
from segcvae.data.nifti import (
    NiftiImage,
    check_same_grid,
    integer_labels,
    intensity_range,
    is_nifti,
    slice_name,
    to_uint8,
)
from segcvae.data.raters import majority_vote_np

logger = logging.getLogger("segcvae.data.folder")


class FolderReading:
    """Reading a folder dataset's items (a mixin of :class:`~segcvae.data.folder.FolderDataset`,
    which sets the attributes below)."""

    items: list[tuple[str, Path, list[Path], int | None]]
    nifti_axis: int
    nifti_slices: str
    nifti_intensity: str
    binary_threshold: int | None
    mask_resize: bool
    rgb_masks: bool
    mask_colours: list[tuple[int, ...]] | None
    colour_tolerance: int
    class_names: list[str]
    ignore_index: int
    on_bad_sample: str
    split: str
    num_classes: int
    _ranges: dict[Path, tuple[float, float]]
    _mismatched: tuple[int, int] | None

    # ------------------------------------------------------------------ NIfTI volumes
    def _slice_volumes(
        self, items: list[tuple[str, Path, list[Path]]]
    ) -> list[tuple[str, Path, list[Path], int | None]]:
        """One item per 2D image; one per (kept) slice of a 3D NIfTI volume."""
        out: list[tuple[str, Path, list[Path], int | None]] = []
        volumes = slices = 0
        for stem, image_path, mask_paths in items:
            if not is_nifti(image_path):
                out.append((stem, image_path, mask_paths, None))
                continue
            try:
                image = NiftiImage(image_path)
                if image.ndim == 2:
                    out.append((stem, image_path, mask_paths, None))
                    continue
                n = image.num_slices(self.nifti_axis)
                kept = (
                    self._foreground_slices(image, mask_paths)
                    if self.nifti_slices == "foreground"
                    else list(range(n))
                )
            except DataError as e:
                if self.on_bad_sample == "error":
                    raise
                logger.warning("skipping the volume %s: %s", image_path, e)
                continue
            volumes += 1
            slices += len(kept)
            ids = [f"{stem}:{slice_name(k, self.nifti_axis, n)}" for k in kept]
            out += [(i, image_path, mask_paths, k) for i, k in zip(ids, kept, strict=True)]
        if volumes:
            logger.info(
                "%s split: %d NIfTI volumes -> %d slices along axis %d (data.folder.nifti_slices=%s)",
                self.split,
                volumes,
                slices,
                self.nifti_axis,
                self.nifti_slices,
            )
        return out

    def _foreground_slices(self, image: NiftiImage, mask_paths: list[Path]) -> list[int]:
        """Indices of the slices where some rater's mask holds a class other than background."""
        axis = self.nifti_axis
        keep = np.zeros(image.num_slices(axis), dtype=bool)
        others = tuple(a for a in range(3) if a != axis)
        for path in mask_paths:
            mask = self._nifti_mask(image, path)
            values = mask.read_volume()
            if self.binary_threshold is not None:
                marked = values >= self.binary_threshold
            else:
                labels = integer_labels(values, path)
                marked = (labels != 0) & (labels != self.ignore_index)
            keep |= marked.any(axis=others)
        return np.flatnonzero(keep).tolist()

    def _nifti_mask(self, image: NiftiImage, path: Path) -> NiftiImage:
        if not is_nifti(path):
            raise DataError(
                f"{path}: not a NIfTI file, but its image {image.path} is a 3D volume; expected "
                "NIfTI masks on the image's voxel grid"
            )
        mask = NiftiImage(path)
        check_same_grid(image, mask)
        return mask

    def _nifti_picture(self, image: NiftiImage, index: int | None) -> np.ndarray:
        """(H, W, 3) uint8 slice ``index`` of ``image``, scaled by the file's intensity range."""
        plane = image.read(index, self.nifti_axis)
        if image.path not in self._ranges:
            values = plane if image.ndim == 2 else image.read_volume()
            self._ranges[image.path] = intensity_range(values, self.nifti_intensity, image.path)
        return to_uint8(plane, *self._ranges[image.path])

    # ------------------------------------------------------------------ reading an item
    def load(self, index: int) -> Sample:
        item_id, image_path, mask_paths, k = self.items[index]
        volume = NiftiImage(image_path) if is_nifti(image_path) else None
        image = read_image(image_path) if volume is None else self._nifti_picture(volume, k)
        masks = []
        for mask_path in mask_paths:
            if volume is not None and (volume.ndim == 3 or is_nifti(mask_path)):
                mask = self._nifti_mask(volume, mask_path)
                raw = mask.read(k, self.nifti_axis)
            elif is_nifti(mask_path):  # a NIfTI mask of a PNG (or other 2D file) image
                raw = NiftiImage(mask_path).read(None, self.nifti_axis)
            else:
                raw = read_mask(mask_path)
            masks.append(self._resized(self.labels(raw, mask_path), image, image_path, mask_path))
        stacked = np.stack(masks)  # (R, H, W)
        reference = (
            stacked[0]
            if len(masks) == 1
            else majority_vote_np(stacked, self.num_classes, self.ignore_index)
        )
        return Sample(image=image, mask=reference, id=item_id, masks=stacked)

    def _resized(
        self, mask: np.ndarray, image: np.ndarray, image_path: Path, mask_path: Path
    ) -> np.ndarray:
        """``mask`` itself, resized to the image (``mask_resize``) or a DataError if sizes differ."""
        h, w = image.shape[:2]
        if mask.shape == (h, w):
            return mask
        if self.mask_resize:
            return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        message = (
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
            f"{image_path} is {w}x{h}; expected the same size"
        )
        bad, total = self.size_mismatches()
        if bad > 1:
            message += f"; {bad} of the {total} items of the {self.split} split have such masks"
            if 2 * bad > total:
                message += (
                    " (rescaled copies of the masks?): set data.folder.mask_resize=true to resize each "
                    "mask to its image (nearest neighbour)"
                )
        raise DataError(message)

    def size_mismatches(self) -> tuple[int, int]:
        """(items with a mask of another size than their image, items) in this split.

        Read from the file headers (not the pixels) once per process; NIfTI volumes, whose masks
        must share the image's voxel grid, are not counted.
        """
        if self._mismatched is None:
            bad = total = 0
            for _, image_path, mask_paths, k in self.items:
                if k is not None:
                    continue
                total += 1
                size = picture_size(image_path, self.nifti_axis)
                sizes = {picture_size(m, self.nifti_axis) for m in mask_paths}
                bad += int(size is not None and any(s not in (None, size) for s in sizes))
            self._mismatched = (bad, total)
        return self._mismatched

    def read_label(self, mask_path: Path) -> np.ndarray:
        """One 2D mask file as (H, W) uint8 class indices; DataError naming the file otherwise."""
        if is_nifti(mask_path):
            return self.labels(NiftiImage(mask_path).read(None, self.nifti_axis), mask_path)
        return self.labels(read_mask(mask_path), mask_path)

    def labels(self, raw: np.ndarray, mask_path: Path) -> np.ndarray:
        """Stored mask values (H, W) or (H, W, 3) -> (H, W) uint8 class indices.

        Raises:
            DataError: naming ``mask_path``: values that are not class indices (or not whole
                numbers), unknown colours, colour masks where grey ones are expected.
        """
        if self.binary_threshold is not None:
            if raw.ndim == 3:
                if int(np.ptp(raw.astype(np.int16), axis=-1).max()) > 64:
                    raise DataError(
                        f"{mask_path}: colour mask; data.folder.binary_threshold expects grey masks "
                        "(set data.folder.palette for RGB label colours instead)"
                    )
                raw = cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
            return (raw >= self.binary_threshold).astype(np.uint8)
        if not np.issubdtype(raw.dtype, np.integer):  # NIfTI masks may be stored as floats
            raw = integer_labels(raw, mask_path)
        if self.rgb_masks:
            if raw.ndim != 3:
                raise DataError(
                    f"{mask_path}: single-channel mask; expected RGB colours of data.folder.palette"
                )
            return colours_to_index(
                raw, self.mask_colours, mask_path, self.class_names, self.colour_tolerance
            )
        if raw.ndim == 3:
            if not (
                np.array_equal(raw[..., 0], raw[..., 1])
                and np.array_equal(raw[..., 0], raw[..., 2])
            ):
                raise DataError(
                    f"{mask_path}: colour mask; expected single-channel class indices "
                    "(or set data.folder.palette for RGB masks)"
                )
            raw = raw[..., 0]
        k = self.num_classes
        bad = ((raw >= k) | (raw < 0)) & (raw != self.ignore_index)
        if bad.any():
            values = np.unique(raw[bad])[:5].tolist()
            message = (
                f"{mask_path}: class values {values} out of range; expected 0..{k - 1} "
                f"or {self.ignore_index} (ignore)"
            )
            if k == 2:
                message += (
                    "; for binary masks stored with other values (e.g. 0/255, or JPEG noise) "
                    "set data.folder.binary_threshold=128"
                )
            raise DataError(message)
        if k == 2 and self.ignore_index == 255:
            # A 0/255 mask passes the range check (255 = ignore) and would train on nothing.
            values = np.unique(raw)
            if 255 in values and 1 not in values:
                raise DataError(
                    f"{mask_path}: values {values.tolist()[:5]} found, with 2 classes; this looks "
                    "like a 0/255 binary mask, but 255 is data.ignore_index (excluded from the "
                    "loss): set data.folder.binary_threshold=128 to read 255 as the foreground"
                )
        return raw.astype(np.uint8)


__all__ = ["FolderReading"]
