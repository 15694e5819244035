"""Sections that hold named settings groups: ``model.<family>`` and ``data.<dataset>``.

A model family and a dataset each declare their own settings dataclass next to their code
(:mod:`segcvae.settings`) and register it with themselves (``settings = SSNSettings``). The section
that chooses among them (``model.arch``, ``data.name``) holds one settings object per group it was
given, read from the mapping named like the group (``model: {arch: ssn, ssn: {rank: 10}}``,
``data: {name: shapes, shapes: {ambiguity: flip}}``). :class:`SettingsGroups` is that one
mechanism for both sections: lookup, defaults, range checks, equality and the resolved dict.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar

from segcvae.config.checks import ConfigError
from segcvae.settings import SettingsError, check_settings


class SettingsGroups:
    """Mixin of a config section whose field :attr:`selector` names the group in use.

    Subclasses set ``selector`` (the field, e.g. ``"arch"``), ``kind`` (the word for a group in
    messages, e.g. ``"family"``), and implement :meth:`group_names` and :meth:`group_settings`
    (a registry's lookups). ``section.<group>`` is that group's settings.
    """

    selector: ClassVar[str]
    kind: ClassVar[str]
    section: ClassVar[str]  # the section's key in the config, e.g. "model"

    @staticmethod
    def group_names() -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def group_settings(name: str) -> type | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __post_init__(self) -> None:
        self._settings: dict[str, Any] = {}  # group name -> its settings dataclass instance

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: section.<group> is that group's settings
        if not name.startswith("_") and name in self.group_names():
            return self.settings(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self, name: str | None = None) -> Any:
        """The settings of group ``name`` (default: the one in use): what the config gave, else
        the group's defaults; None for a group without settings."""
        name = name or getattr(self, self.selector)
        if name not in self._settings:
            cls = self.group_settings(name)
            if cls is None:
                return None
            self._settings[name] = cls()
        return self._settings[name]

    def set_settings(self, name: str, value: Any) -> None:
        """Give group ``name`` these settings (an instance of its settings dataclass)."""
        self._settings[name] = value

    def _peek(self, name: str) -> Any:
        """The settings of ``name`` without remembering defaults (for comparisons)."""
        if name in self._settings:
            return self._settings[name]
        cls = self.group_settings(name)
        return None if cls is None else cls()

    def settings_dict(self) -> dict[str, dict[str, Any]]:
        """The settings given or used so far, ``{group: {key: value}}`` (validation uses the
        group in use's, so a loaded config writes them)."""
        return {name: asdict(value) for name, value in self._settings.items()}

    def check_groups(self) -> None:
        """Range-check every group's settings (``<section>.<group>.<key>: expected ...``); the
        group in use also by its ``validate_in_use(prefix)``, if it has one."""
        in_use = getattr(self, self.selector)
        self.settings()  # the settings in use appear in the resolved config
        for name, value in self._settings.items():
            prefix = f"{self.section}.{name}"
            try:
                check_settings(value, prefix)
                extra = getattr(value, "validate_in_use", None)
                if name == in_use and callable(extra):
                    extra(prefix)
            except SettingsError as e:
                raise ConfigError(str(e)) from None

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        if any(getattr(self, f.name) != getattr(other, f.name) for f in fields(self)):  # type: ignore[arg-type]
            return False
        names = {getattr(self, self.selector), *self._settings, *other._settings}  # type: ignore[attr-defined]
        known = set(self.group_names())
        return all(self._peek(n) == other._peek(n) for n in names if n in known)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq


__all__ = ["SettingsGroups"]
