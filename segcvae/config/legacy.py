"""Keys written before settings moved to what they configure, read as what they mean now.

Configs, command lines and checkpoints written before keep loading: a flat key of a family's
(``model.ssn_rank``) or a dataset's (``data.shapes_train_size``, ``data.folder_layout``) own
settings is read as the nested one (``model.ssn.rank``, ``data.shapes.train_size``,
``data.folder.layout``).
"""

from __future__ import annotations

import logging
from typing import Any

from segcvae.config.checks import ConfigError

log = logging.getLogger("segcvae")

#: Family settings that were flat ``model`` keys before each family declared its own (2026-12-07):
#: old key -> (family, setting).
LEGACY_FAMILY_KEYS: dict[str, tuple[str, str]] = {
    "prob_unet_latent_dim": ("prob_unet", "latent_dim"),
    "prob_unet_fcomb_layers": ("prob_unet", "fcomb_layers"),
    "ssn_rank": ("ssn", "rank"),
    "ssn_mc_samples": ("ssn", "mc_samples"),
    "ssn_epsilon": ("ssn", "epsilon"),
}

_SHAPES = ("train_size", "val_size", "test_size", "classes", "completions", "difficulty", "seed")
_CUB = ("classes", "segmentations", "crop", "crop_margin", "mask_threshold", "val_ratio")
_FOLDER = ("images", "masks", "palette", "classes", "splits", "val_ratio", "test_ratio")
_FOLDER_PREFIXED = ("layout", "image_pattern", "mask_pattern", "split_dirs")
_FOLDER_PLAIN = ("binary_threshold", "mask_resize", "nifti_axis", "nifti_slices", "nifti_intensity")

#: Dataset settings that were flat ``data`` keys before each dataset declared its own
#: (2026-12-08): old key -> (dataset, setting).
LEGACY_DATA_KEYS: dict[str, tuple[str, str]] = {
    **{f"shapes_{k}": ("shapes", k) for k in (*_SHAPES, "ambiguity")},
    **{f"lesions_{k}": ("lesions", k) for k in ("train_size", "val_size", "test_size", "raters")},
    "lesions_seed": ("lesions", "seed"),
    "lfw_masks": ("lfw", "masks"),
    "lfw_flips": ("lfw", "flips"),
    **{f"cub_{k}": ("cub", k) for k in _CUB},
    **{f"folder_{k}": ("folder", k) for k in (*_FOLDER, *_FOLDER_PREFIXED)},
    **{k: ("folder", k) for k in _FOLDER_PLAIN},
}

#: Section -> its legacy map.
LEGACY_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "model": LEGACY_FAMILY_KEYS,
    "data": LEGACY_DATA_KEYS,
}


def legacy_path(section: str, key: str) -> tuple[str, str] | None:
    """``("data", "shapes_seed")`` -> ``("shapes", "seed")``; None for a key of today."""
    return LEGACY_KEYS.get(section, {}).get(key)


def nest_legacy_keys(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """``model.ssn_rank: 5`` -> ``model.ssn.rank: 5``, ``data.shapes_seed: 1`` ->
    ``data.shapes.seed: 1`` (:data:`LEGACY_KEYS`); a value stated both ways must agree."""
    out = raw
    for name, legacy in LEGACY_KEYS.items():
        values = raw.get(name)
        if not isinstance(values, dict) or not any(k in legacy for k in values):
            continue
        values = dict(values)
        for old, (group, key) in legacy.items():
            if old not in values:
                continue
            value = values.pop(old)
            nested = values.get(group)
            nested = dict(nested) if isinstance(nested, dict) else {}
            if key in nested and nested[key] != value:
                raise ConfigError(
                    f"{source}: {name}.{old} ({value!r}) and {name}.{group}.{key} "
                    f"({nested[key]!r}) disagree; write {name}.{group}.{key} only"
                )
            nested.setdefault(key, value)
            values[group] = nested
            log.debug("%s: %s.%s is read as %s.%s.%s", source, name, old, name, group, key)
        out = {**out, name: values}
    return out


def read_legacy_keys(cfg: Any, source: str) -> None:
    """Read settings written before the family registry as what they mean now (with a warning).

    ``model.arch=sohn`` with ``loss.objective=cnn`` was the baseline CNN (or, with
    ``model.generation=refine``, the two-stage CNN): now ``model.arch=cnn`` (``refine_cnn``).
    Checkpoints written before keep loading.
    """
    if cfg.model.arch == "sohn" and cfg.loss.objective == "cnn":
        arch = "refine_cnn" if cfg.model.generation == "refine" else "cnn"
        log.warning(
            "%s: loss.objective=cnn with model.arch=sohn is read as model.arch=%s (the CNN is a "
            "family of its own now; write model.arch: %s)",
            source,
            arch,
            arch,
        )
        cfg.model.arch = arch


__all__ = [
    "LEGACY_DATA_KEYS",
    "LEGACY_FAMILY_KEYS",
    "LEGACY_KEYS",
    "legacy_path",
    "nest_legacy_keys",
    "read_legacy_keys",
]
