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

Import that file before the config is read (a ``model.arch: phiseg`` names it from then on): every
command takes ``--import phiseg`` (a module on ``sys.path``) or ``--import path/to/phiseg.py``. A
package that ships families declares them as entry points of the group ``segcvae.families``
(in its ``pyproject.toml``: ``[project.entry-points."segcvae.families"] phiseg =
"my_package.phiseg:PHiSeg"``); they are listed without being imported, and imported when a
config names them.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

#: The built-in families: ``model.arch`` -> ``"module:Class"``.
BUILTIN_FAMILIES: dict[str, str] = {
    "cnn": "segcvae.models.baseline:BaselineCNN",
    "refine_cnn": "segcvae.models.refine:RefinedCNN",
    # Sohn et al.'s CVAE, one family per latent kind; sohn with model.latent=categorical (the
    # default) is sohn_categorical (GaussianSegCVAE.family_for)
    "sohn": "segcvae.models.cvae_gaussian:GaussianSegCVAE",
    "sohn_categorical": "segcvae.models.cvae_categorical:CategoricalSegCVAE",
    "prob_unet": "segcvae.models.prob_unet:ProbUNet",
    "ssn": "segcvae.models.ssn:SSN",
    "mc_dropout": "segcvae.models.mc_dropout:MCDropoutCNN",
    "ensemble": "segcvae.models.ensemble:EnsembleCNN",
}

_REGISTERED: dict[str, type] = {}

#: The entry-point group of families that other installed packages provide.
ENTRY_POINT_GROUP = "segcvae.families"


@functools.cache
def plugin_families() -> dict[str, importlib.metadata.EntryPoint]:
    """The families installed packages declare in :data:`ENTRY_POINT_GROUP`, by name (not
    imported; read once per process, ``plugin_families.cache_clear()`` reads them again). A name
    of a built-in family is left out."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in found if ep.name not in BUILTIN_FAMILIES}


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
    names = [*BUILTIN_FAMILIES, *(n for n in _REGISTERED if n not in BUILTIN_FAMILIES)]
    return names + [n for n in plugin_families() if n not in names]


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
    if name in plugin_families():  # an entry point of an installed package: import it
        family = plugin_families()[name].load()
        if name not in _REGISTERED:  # its module did not register it by decorator
            register_family(name)(family)
        return _REGISTERED[name]
    if name not in BUILTIN_FAMILIES:
        raise KeyError(f"unknown model.arch {name!r}; valid: {', '.join(family_names())}")
    module, attr = BUILTIN_FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "BUILTIN_FAMILIES",
    "ENTRY_POINT_GROUP",
    "family_names",
    "family_settings",
    "get_family",
    "plugin_families",
    "register_family",
    "unregister_family",
]
