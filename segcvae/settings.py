"""Typed settings that live with what they configure (a model family, a dataset).

A family declares its own settings as a small dataclass next to its code and registers it with
itself (``settings = SSNSettings`` on the family class). The config file names them under the
family, ``model: {arch: ssn, ssn: {rank: 10}}`` (override: ``model.ssn.rank=10``), and they are
checked when the config loads, like every other key::

    @dataclass
    class SSNSettings:
        rank: int = setting(10, ge=1, help="rank R of the covariance factor")

    model.ssn.rank=0  ->  ConfigError: model.ssn.rank: expected an integer >= 1, got 0

:func:`setting` is ``dataclasses.field`` with the value's bounds and a one-line help text in its
metadata (the docs' config reference prints both); :func:`check_settings` checks every field's
bounds and then the dataclass's own ``validate(prefix)`` (cross-field rules), if it has one.
This module imports neither torch nor the rest of the package.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any


class SettingsError(ValueError):
    """A setting is out of its range; the message names it (``model.ssn.rank: expected ...``)."""


#: Bound name -> (comparison, words); ``ge=1`` reads "an integer >= 1".
_BOUNDS: dict[str, tuple[Any, str]] = {
    "gt": (lambda v, b: v > b, ">"),
    "ge": (lambda v, b: v >= b, ">="),
    "lt": (lambda v, b: v < b, "<"),
    "le": (lambda v, b: v <= b, "<="),
}


def setting(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    help: str = "",
) -> Any:
    """A settings field: ``dataclasses.field`` with bounds and a help line in its metadata.

    Args:
        default: The default value.
        default_factory: For a mutable default (a list).
        gt: The value must be greater than this (numbers).
        ge: ... greater than or equal to this.
        lt: ... less than this.
        le: ... less than or equal to this.
        help: One line for the config reference.
    """
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    metadata = {"help": help, "bounds": bounds}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def describe_bounds(f: Field) -> str:
    """What a field's bounds allow, e.g. ``"an integer >= 1"`` or ``"a number in (0, 1)"``."""
    bounds = f.metadata.get("bounds", {})
    kind = "an integer" if f.type in (int, "int") else "a number"
    if not bounds:
        return kind
    lo = next(((k, bounds[k]) for k in ("gt", "ge") if k in bounds), None)
    hi = next(((k, bounds[k]) for k in ("lt", "le") if k in bounds), None)
    if lo and hi:
        left = "(" if lo[0] == "gt" else "["
        right = ")" if hi[0] == "lt" else "]"
        return f"{kind} in {left}{lo[1]:g}, {hi[1]:g}{right}"
    name, value = lo or hi  # type: ignore[misc]
    return f"{kind} {_BOUNDS[name][1]} {value:g}"


def check_settings(obj: Any, prefix: str) -> None:
    """Check every field of a settings dataclass against its bounds, then its ``validate``.

    Args:
        obj: A settings dataclass instance.
        prefix: What the messages call it, e.g. ``"model.ssn"``.

    Raises:
        SettingsError: ``"<prefix>.<field>: expected <what the bounds allow>, got <value>"``.
    """
    if not is_dataclass(obj):
        raise TypeError(f"{prefix}: settings must be a dataclass instance, got {type(obj)}")
    for f in fields(obj):
        value = getattr(obj, f.name)
        bounds = f.metadata.get("bounds", {})
        if not bounds or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        ok = math.isfinite(value) and all(_BOUNDS[k][0](value, b) for k, b in bounds.items())
        if not ok:
            raise SettingsError(f"{prefix}.{f.name}: expected {describe_bounds(f)}, got {value!r}")
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(prefix)


__all__ = ["SettingsError", "check_settings", "describe_bounds", "setting"]
