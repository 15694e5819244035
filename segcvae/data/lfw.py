"""LFW Part Labels: face / hair / background labels for 2,927 lfw_funneled images.

Expected layout under ``root`` (see datasets/lfw/README.md)::

    lfw_funneled/<Name>/<Name>_NNNN.jpg
    parts_lfw_funneled_gt_images.tgz                 the label archive, as distributed, or
    parts_lfw_funneled_gt_images/<Name>_NNNN.ppm     its extracted folder (or elsewhere: ``masks_dir``)
    parts_train.txt  parts_validation.txt  parts_test.txt

With ``flips`` (``data.lfw.flips``) the masks are made jointly ambiguous by the Probabilistic
U-Net paper's recipe (:mod:`segcvae.data.flips`): each listed class ``c`` gets a new class
``c_alt`` and every item carries all ``2**F`` plausible masks with their probabilities.

When only the archive is there, it is extracted once into a cache (:func:`extracted_labels`): the
first of ``$SEGCVAE_CACHE``, ``$XDG_CACHE_HOME/segcvae`` (default ``~/.cache/segcvae``),
``<root>/.segcvae_cache`` and the system temporary folder that can be written (a read-only
``root`` is fine), and the folder used is logged. About 530 MB unpacked.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segcvae.config import ConfigError, DataConfig
from segcvae.data.base import (
    SPLITS,
    Sample,
    SegmentationDataset,
    check_same_size,
    dataset_root,
    drop_missing,
)
from segcvae.data.files import DataError, colours_to_index, read_image, read_mask
from segcvae.data.flips import (
    ClassFlip,
    check_flip_probability,
    draw_mode,
    flip_mode_probs,
    flip_modes,
)
from segcvae.settings import setting

MASKS_FOLDER = "parts_lfw_funneled_gt_images"
SPLIT_FILES = {"train": "parts_train.txt", "val": "parts_validation.txt", "test": "parts_test.txt"}
_LINE = re.compile(r"^(\S+)\s+(\d+)$")
CACHE_ENV = "SEGCVAE_CACHE"
_DONE = ".extracted"  # written last: a folder without it is an interrupted extraction
CLASS_NAMES = ("background", "skin", "hair")
LABEL_COLOURS = ((0, 0, 255), (0, 255, 0), (255, 0, 0))  # the label images' colours, by class
ALT_COLOURS = ((0, 255, 255), (255, 255, 0), (255, 0, 255))  # <class>_alt: cyan, yellow, magenta

log = logging.getLogger("segcvae")


def cache_folders(root: Path) -> list[Path]:
    """Where an archive found under ``root`` may be extracted, in order of preference."""
    folders = []
    if os.environ.get(CACHE_ENV):
        folders.append(Path(os.environ[CACHE_ENV]))
    xdg = os.environ.get("XDG_CACHE_HOME")
    folders.append((Path(xdg) if xdg else Path.home() / ".cache") / "segcvae")
    if _marked_writable(root):
        folders.append(root / ".segcvae_cache")
    folders.append(Path(tempfile.gettempdir()) / f"segcvae-cache-{os.getuid()}")
    return folders


def _marked_writable(folder: Path) -> bool:
    """Writable, and not marked read-only by its mode bits (which root would otherwise ignore)."""
    try:
        return bool(folder.stat().st_mode & 0o222) and os.access(folder, os.W_OK)
    except OSError:
        return False


def extracted_labels(archive: Path, root: Path) -> Path:
    """The label folder of ``archive``, extracted once into the first writable cache folder.

    The extraction goes to a temporary folder beside its target and is renamed into place when
    complete, so an interrupted run never leaves a partial label folder behind. A cache made from
    an archive of another size or date is extracted again.

    Returns:
        ``<cache>/lfw-<size>-<mtime>/parts_lfw_funneled_gt_images``.

    Raises:
        DataError: no cache folder can be written, or the archive does not hold the label folder.
    """
    stat = archive.stat()
    key = f"lfw-{stat.st_size}-{stat.st_mtime_ns}"
    stamp = f"{archive.resolve()} {stat.st_size} {stat.st_mtime_ns}\n"
    for cache in cache_folders(root):
        target = cache / key
        if (target / _DONE).is_file() and (target / MASKS_FOLDER).is_dir():
            log.info("LFW labels: %s (extracted from %s)", target / MASKS_FOLDER, archive)
            return target / MASKS_FOLDER
    tried = []
    for cache in cache_folders(root):
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cache))
        except OSError as e:
            tried.append(f"{cache} ({e.strerror or e})")
            continue
        try:
            log.info("LFW labels: extracting %s once into %s ...", archive, cache / key)
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:  # Python without extraction filters
                    tar.extractall(tmp)
            if not (tmp / MASKS_FOLDER).is_dir():
                raise DataError(
                    f"{archive} holds no {MASKS_FOLDER}/ folder; expected the official archive"
                )
            (tmp / _DONE).write_text(stamp)
            try:
                os.replace(tmp, cache / key)
            except OSError:  # another process finished first (the target exists): use theirs
                if not (cache / key / _DONE).is_file():
                    raise
        except (OSError, tarfile.TarError) as e:
            raise DataError(f"cannot extract {archive} into {cache}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("LFW labels: %s", cache / key / MASKS_FOLDER)
        return cache / key / MASKS_FOLDER
    raise DataError(
        f"cannot extract {archive}: no writable cache folder (tried {'; '.join(tried)}); set "
        f"{CACHE_ENV} to a writable folder, or extract it yourself and set data.lfw.masks"
    )


def read_lfw_split(path: Path) -> list[str]:
    """Parse an official ``parts_*.txt`` file into ids ``<Name>_NNNN``.

    Each line is ``<Name> <N>``; N may be unpadded (``Dianne_Feinstein 2``) and is formatted
    as ``%04d``.

    Raises:
        DataError: the file is missing, a line is malformed, or the file lists nothing.
    """
    if not path.is_file():
        raise DataError(f"LFW split file not found: {path}; expected the official {path.name}")
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise DataError(f"{path}, line {number}: {line!r}; expected '<Name> <number>'")
        ids.append(f"{match.group(1)}_{int(match.group(2)):04d}")
    if not ids:
        raise DataError(f"{path}: split file lists no images")
    return ids


@dataclass
class LFWSettings:
    """The LFW dataset's own settings (``data.lfw.<key>``; datasets/lfw/README.md)."""

    masks: str = setting(
        "", help='extracted label folder; "" = under root (the .tgz is extracted to a cache)'
    )
    # known joint ambiguity (issue 33; datasets/lfw/README.md, "Flipped classes"): class name ->
    # probability that all its pixels become <name>_alt, independently per class (Kohl et al.
    # 2018's Cityscapes recipe), e.g. {hair: 0.4706, skin: 0.2941}; {} = the labels as they are
    flips: dict[str, float] = setting(default_factory=dict)

    def validate(self, prefix: str) -> None:
        """Flips name LFW classes, with probabilities in (0, 1)."""
        try:
            class_flips(self.flips)
        except ValueError:
            raise ConfigError(
                f"{prefix}.flips: expected a mapping of LFW classes ({', '.join(CLASS_NAMES)}) to "
                f"probabilities in (0, 1), e.g. {{hair: 0.4706, skin: 0.2941}}, got {self.flips!r}"
            ) from None


class LFWPartsDataset(SegmentationDataset):
    """LFW Part Labels with the official splits (train 1,500 / val 500 / test 927).

    Classes: 0 background, 1 skin (face), 2 hair, read from the label colours
    (0, 0, 255), (0, 255, 0) and (255, 0, 0). With ``flips`` each flipped class ``c`` adds a class
    ``c_alt`` after them, in class order (e.g. 3 skin_alt, 4 hair_alt), and every item holds
    ``masks`` (2**F, H, W), all plausible masks in the order of :mod:`segcvae.data.flips` (the
    flipped classes in class order, mode 0 = the labels as they are), ``mask_probs`` (2**F,) and
    ``mask``, one of them drawn by the probabilities from ``(split, index)``.

    Args:
        root: folder holding ``lfw_funneled/``, the ``parts_*.txt`` files and the labels.
        split: "train", "val" (``parts_validation.txt``) or "test".
        masks_dir: folder of the extracted ``<Name>_NNNN.ppm`` labels; None means
            ``root/parts_lfw_funneled_gt_images``, or, when only ``root/parts_lfw_funneled_gt_images.tgz``
            is there, that archive extracted once into a cache (:func:`extracted_labels`).
        colour_tolerance: 0 = exact label colours only; > 0 = map a pixel to the nearest label
            colour within this per-channel distance (for JPEG-noisy label copies).
        transform: albumentations transform applied to image and mask together.
        on_bad_sample: "error" or "skip" (see :class:`SegmentationDataset`).
        ignore_index: mask value excluded from losses (LFW labels never use it).
        flips: class name -> probability that all its pixels are relabelled ``<name>_alt``,
            independently per class (Kohl et al. 2018's recipe); None or empty = the labels as
            they are.

    Raises:
        ValueError: ``flips`` names a class LFW does not have, or a probability outside (0, 1).
    """

    class_names = list(CLASS_NAMES)
    palette = list(LABEL_COLOURS)  # the label colours themselves, then those of the _alt classes
    settings = LFWSettings

    @classmethod
    def from_config(
        cls, cfg: DataConfig, split: str, transform: Callable[..., dict[str, Any]] | None = None
    ) -> LFWPartsDataset:
        """The split ``split`` as ``cfg`` (the data section) describes it."""
        s = cfg.settings("lfw")
        s.validate("data.lfw")  # a DataConfig built without from_dict's validation
        return cls(
            root=dataset_root(cfg),
            split=split,
            masks_dir=s.masks or None,
            colour_tolerance=cfg.colour_tolerance,
            transform=transform,
            on_bad_sample=cfg.on_bad_sample,
            ignore_index=cfg.ignore_index,
            flips=s.flips,
        )

    def __init__(
        self,
        root: str | Path,
        split: str,
        masks_dir: str | Path | None = None,
        colour_tolerance: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        on_bad_sample: str = "error",
        ignore_index: int = 255,
        flips: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(split, transform, on_bad_sample, ignore_index)
        self.flips = class_flips(flips or {})
        self.class_names = list(CLASS_NAMES) + [f"{CLASS_NAMES[f.source]}_alt" for f in self.flips]
        self.palette = list(LABEL_COLOURS) + [ALT_COLOURS[f.source] for f in self.flips]
        self.masks_are_modes = bool(self.flips)  # every plausible mask, with its probability
        self.mode_probs = flip_mode_probs(self.flips) if self.flips else None  # (2**F,)
        self.root = Path(root)
        self.colour_tolerance = colour_tolerance
        if not self.root.is_dir():
            raise DataError(
                f"LFW root not found: {self.root}; expected a folder with lfw_funneled/"
            )
        self.image_dir = self.root / "lfw_funneled"
        if not self.image_dir.is_dir():
            raise DataError(
                f"LFW images not found: {self.image_dir}; expected lfw_funneled/<Name>/"
            )
        self.masks_dir = Path(masks_dir) if masks_dir else self.root / MASKS_FOLDER
        archive = self.root / f"{MASKS_FOLDER}.tgz"
        if not self.masks_dir.is_dir() and not masks_dir and archive.is_file():
            self.masks_dir = extracted_labels(archive, self.root)
        if not self.masks_dir.is_dir():
            raise DataError(
                f"LFW label folder not found: {self.masks_dir}"
                + (" (data.lfw.masks)" if masks_dir else "")
                + f"; expected <Name>_NNNN.ppm files from {MASKS_FOLDER}.tgz (or that archive "
                "itself under data.root)"
            )
        split_file = self.root / SPLIT_FILES[split]
        complete, missing = [], []
        for item_id in read_lfw_split(split_file):
            image, mask = self.image_path(item_id), self.mask_path(item_id)
            absent = [str(p) for p in (image, mask) if not p.is_file()]
            if absent:
                missing.append(", ".join(absent))
            else:
                complete.append(item_id)
        self.ids = drop_missing(complete, missing, on_bad_sample, str(split_file))
        if not self.ids:
            raise DataError(f"the {split} split ({split_file}) has no usable items")

    def image_path(self, item_id: str) -> Path:
        """``lfw_funneled/<Name>/<Name>_NNNN.jpg`` for id ``<Name>_NNNN``."""
        return self.image_dir / item_id[:-5] / f"{item_id}.jpg"

    def mask_path(self, item_id: str) -> Path:
        """``<masks_dir>/<Name>_NNNN.ppm`` for id ``<Name>_NNNN``."""
        return self.masks_dir / f"{item_id}.ppm"

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        item_id = self.ids[index]
        image_path, mask_path = self.image_path(item_id), self.mask_path(item_id)
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if raw.ndim != 3:
            raise DataError(f"{mask_path}: single-channel label image; expected RGB label colours")
        mask = colours_to_index(
            raw, list(LABEL_COLOURS), mask_path, list(CLASS_NAMES), self.colour_tolerance
        )
        sample = Sample(image=image, mask=mask, id=item_id)
        check_same_size(sample, image_path, mask_path)
        if self.flips:
            masks = flip_modes(mask, self.flips)  # (2**F, H, W)
            drawn = draw_mode(self.mode_probs, (SPLITS.index(self.split), index))
            sample = Sample(image, masks[drawn], item_id, masks, self.mode_probs)
        return sample


def class_flips(flips: Mapping[str, float]) -> list[ClassFlip]:
    """The flips of ``{class name: probability}``, in class order, onto new classes 3, 4, 5.

    Raises:
        ValueError: an unknown class name, or a probability outside (0, 1).
    """
    unknown = [name for name in flips if name not in CLASS_NAMES]
    if unknown:
        raise ValueError(
            f"flips name unknown classes {unknown}; expected LFW classes ({', '.join(CLASS_NAMES)})"
        )
    bad = {name: p for name, p in flips.items() if not check_flip_probability(p)}
    if bad:
        raise ValueError(f"flip probabilities {bad}; expected numbers in (0, 1)")
    sources = [c for c, name in enumerate(CLASS_NAMES) if name in flips]
    return [
        ClassFlip(source=c, target=len(CLASS_NAMES) + i, probability=float(flips[CLASS_NAMES[c]]))
        for i, c in enumerate(sources)
    ]


__all__ = [
    "CLASS_NAMES",
    "LABEL_COLOURS",
    "LFWPartsDataset",
    "cache_folders",
    "class_flips",
    "extracted_labels",
    "read_lfw_split",
]
