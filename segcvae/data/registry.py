"""Datasets by name: the values of ``data.name`` (as :mod:`segcvae.registry` is for model families).

A dataset is one class (a :class:`segcvae.data.base.SegmentationDataset`) that owns its settings
(``settings = ShapesSettings``: a small dataclass next to its code, read from ``data.<name>``,
e.g. ``data: {name: shapes, shapes: {ambiguity: flip}}``; :mod:`segcvae.settings`) and how it is
built from the config (``from_config(cfg, split, transform)``). The built-in datasets are listed
here by ``"module:Class"`` and imported only when asked for, so the config can check ``data.name``
without importing them. A dataset of your own is one file with a decorated class::

    @register_dataset("mine")
    class MyDataset(SegmentationDataset):
        settings = MySettings  # read from data.mine (data.mine.size=10)

        @classmethod
        def from_config(cls, cfg, split, transform=None): ...

This module imports nothing of the package at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: The built-in datasets: ``data.name`` -> ``"module:Class"``.
BUILTIN_DATASETS: dict[str, str] = {
    "shapes": "segcvae.data.shapes:ShapesDataset",
    "lfw": "segcvae.data.lfw:LFWPartsDataset",
    "cub": "segcvae.data.cub:CUBDataset",
    "folder": "segcvae.data.folder:FolderDataset",
    "qubiq": "segcvae.data.qubiq:QUBIQDataset",
    "lesions": "segcvae.data.lesions:LesionsDataset",
}

_REGISTERED: dict[str, type] = {}


def register_dataset(name: str) -> Callable[[type], type]:
    """Class decorator: make a dataset available as ``data.name: <name>``.

    Raises:
        ValueError: ``name`` is empty or taken by another class.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a dataset name must be a non-empty string, got {name!r}")

    def decorate(cls: type) -> type:
        taken = _REGISTERED.get(name)
        if name in BUILTIN_DATASETS or (taken is not None and taken is not cls):
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTERED[name] = cls
        return cls

    return decorate


def unregister_dataset(name: str) -> None:
    """Remove a dataset registered with :func:`register_dataset` (tests; built-ins stay)."""
    _REGISTERED.pop(name, None)


def dataset_names() -> list[str]:
    """Every ``data.name`` value, built-in datasets first."""
    return [*BUILTIN_DATASETS, *(n for n in _REGISTERED if n not in BUILTIN_DATASETS)]


def get_dataset(name: str) -> Any:
    """The dataset class ``data.name`` names (its module is imported on first use).

    Raises:
        KeyError: an unknown name; the message lists the valid ones.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in BUILTIN_DATASETS:
        raise KeyError(f"unknown data.name {name!r}; valid: {', '.join(dataset_names())}")
    module, attr = BUILTIN_DATASETS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def dataset_settings(name: str) -> type | None:
    """The settings dataclass dataset ``name`` declares (its ``settings`` attribute), or None.

    Raises:
        KeyError: an unknown name.
    """
    return getattr(get_dataset(name), "settings", None)


__all__ = [
    "BUILTIN_DATASETS",
    "dataset_names",
    "dataset_settings",
    "get_dataset",
    "register_dataset",
    "unregister_dataset",
]
