"""The config's checks: :class:`ConfigError`, ``require`` and the type check of a YAML value."""

from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


BASE_KEY = "_base_"


def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise ConfigError ``"<key>: expected <expected>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def finite(value: float) -> bool:
    return math.isfinite(value)


def check_type(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ConfigError(
                f"{where}: expected one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: expected {_name(tp)}, got {value!r}"
        )
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{where}: expected a mapping of {_name(key_tp)} to {_name(value_tp)} "
                f"({{key: value, ...}}), got {value!r}"
            )
        return {
            check_type(k, key_tp, f"{where} (key {k!r})"): check_type(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected {_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [check_type(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_require = require  # the sections' spelling
_finite = finite

__all__ = ["ConfigError", "check_type", "finite", "require"]
