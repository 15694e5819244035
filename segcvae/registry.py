"""Model families by name: the values of ``model.arch`` (timm's ``register_model`` / ``create_model``).

A family is one class (see :class:`segcvae.models.base.ModelFamily`) that owns how it is built from
the config (``from_config``), its objective (``build_objective``), its likelihood estimators and its
noise contract for sampling and export (``noise_shape``, ``decode_noise``). Everything that needs
a model (the trainer, evaluation, predict, export, benchmark, the results tables) asks this registry
and never branches on the family.

The built-in families are listed here by ``"module:Class"`` and imported only when asked for, so
the config can check ``model.arch`` without importing torch. A family of your own is one file
with a decorated class::

    from segcvae.models.base import ModelFamily
    from segcvae.registry import register_family

    @dataclass
    class PHiSegSettings:
        levels: int = setting(5, ge=1, help="latent levels")

    @register_family("phiseg")
    class PHiSeg(ModelFamily):
        settings = PHiSegSettings  # read from model.phiseg (model.phiseg.levels=4)
        ...

Import that file before the config is read (a ``model.arch: phiseg`` names it from then on).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: The built-in families: ``model.arch`` -> ``"module:Class"``.
BUILTIN_FAMILIES: dict[str, str] = {
    "cnn": "segcvae.models.baseline:BaselineCNN",
    "refine_cnn": "segcvae.models.refine:RefinedCNN",
    "sohn": "segcvae.models.cvae:SegCVAE",
    "prob_unet": "segcvae.models.prob_unet:ProbUNet",
    "ssn": "segcvae.models.ssn:SSN",
    "mc_dropout": "segcvae.models.mc_dropout:MCDropoutCNN",
    "ensemble": "segcvae.models.ensemble:EnsembleCNN",
}

_REGISTERED: dict[str, type] = {}


def register_family(name: str) -> Callable[[type], type]:
    """Class decorator: make a model family available as ``model.arch: <name>``.

    Raises:
        ValueError: ``name`` is empty or taken by another class.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a family name must be a non-empty string, got {name!r}")

    def decorate(cls: type) -> type:
        taken = _REGISTERED.get(name)
        if name in BUILTIN_FAMILIES or (taken is not None and taken is not cls):
            raise ValueError(f"model family {name!r} is already registered")
        _REGISTERED[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def unregister_family(name: str) -> None:
    """Remove a family registered with :func:`register_family` (tests; built-ins stay)."""
    _REGISTERED.pop(name, None)


def family_names() -> list[str]:
    """Every ``model.arch`` value, built-in families first."""
    return [*BUILTIN_FAMILIES, *(n for n in _REGISTERED if n not in BUILTIN_FAMILIES)]


def family_settings(name: str) -> type | None:
    """The settings dataclass family ``name`` declares (its ``settings`` attribute), or None.

    ``model.<name>`` in a config is read into it (segcvae.settings). Imports the family's module.

    Raises:
        KeyError: an unknown name.
    """
    return getattr(get_family(name), "settings", None)


def get_family(name: str) -> Any:
    """The family class ``model.arch`` names.

    Raises:
        KeyError: an unknown name; the message lists the valid ones.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in BUILTIN_FAMILIES:
        raise KeyError(f"unknown model.arch {name!r}; valid: {', '.join(family_names())}")
    module, attr = BUILTIN_FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "BUILTIN_FAMILIES",
    "family_names",
    "family_settings",
    "get_family",
    "register_family",
    "unregister_family",
]
