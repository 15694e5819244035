"""The config loader: :class:`Config` (the whole experiment), YAML files, ``_base_`` and overrides."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from segcvae.config.checks import ConfigError, check_type, require
from segcvae.config.data import DataConfig
from segcvae.config.groups import SettingsGroups
from segcvae.config.legacy import legacy_path, nest_legacy_keys, read_legacy_keys
from segcvae.config.sections import (
    HYPOTHESIS_METRICS,
    LIKELIHOOD_METRICS,
    EvalConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)

BASE_KEY = "_base_"


@dataclass
class Config:
    """The whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, source: str = "config") -> Config:
        """Build a config from nested plain data, checking every key, type and range.

        Args:
            raw: ``{section: {key: value}}``; missing sections and keys keep their defaults.
            source: Named in error messages (a file name, "checkpoint config", ...).

        Raises:
            ConfigError: ``"<source>: <section>.<key>: expected ..., got ..."``.
        """
        cfg = cls._build(raw, source)
        read_legacy_keys(cfg, source)
        try:
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        return cfg

    @classmethod
    def _build(cls, raw: dict[str, Any] | None, source: str) -> Config:
        """Keys and types only (no range checks): also used for a ``_base_`` file alone."""
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
        raw = nest_legacy_keys(raw, source)
        sections = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            hint = f" ({BASE_KEY} is read from YAML files only)" if unknown[0] == BASE_KEY else ""
            raise ConfigError(
                f"{source}: unknown section {unknown[0]!r}; valid sections: {sorted(sections)}"
                + hint
            )
        kwargs = {}
        for name, f in sections.items():
            section_cls = f.default_factory  # type: ignore[misc]
            values = raw.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {name!r} must be a mapping")
            kwargs[name] = _build_section(section_cls, values, f"{source}: {name}")
        return cls(**kwargs)

    def validate(self) -> None:
        """Check every value's range, and the settings that depend on each other.

        Called by :meth:`from_dict` (so by :meth:`from_yaml` and when a checkpoint is read); call
        it yourself after changing a config in code.

        Raises:
            ConfigError: naming the first key out of range and what is allowed.
        """
        for section in (self.data, self.model, self.loss, self.train, self.eval):
            section.validate()
        select = self.train.select
        if select in HYPOTHESIS_METRICS:
            require(
                self.eval.hypotheses > 0,
                "eval.hypotheses",
                f"> 0 (train.select={select} is computed from hypotheses)",
                self.eval.hypotheses,
            )
        if select in LIKELIHOOD_METRICS:
            require(
                self.eval.samples > 0,
                "eval.samples",
                f"> 0 (train.select={select} is a likelihood)",
                self.eval.samples,
            )
        stride = 2**self.model.encoder_depth
        require(
            self.data.image_size % stride == 0,
            "data.image_size",
            f"a multiple of {stride} (2 ** model.encoder_depth={self.model.encoder_depth}: the "
            f"encoder halves the image {self.model.encoder_depth} times), e.g. "
            f"{max(stride, round(self.data.image_size / stride) * stride)}",
            self.data.image_size,
        )

    @classmethod
    def from_yaml(
        cls, path: str | Path | None = None, overrides: list[str] | None = None
    ) -> Config:
        """Read a YAML file (or the defaults when ``path`` is None) and apply dotted overrides.

        A top-level ``_base_`` (a file, or a list of files, relative to the file's folder) names
        the bases this file extends; their sections are merged key by key under this file's.
        """
        raw: dict[str, Any] = {}
        source = "defaults"
        if path is not None:
            path = Path(path)
            raw = _read_yaml(path)
            source = str(path)
            names = raw.pop(BASE_KEY, None)
            if names is not None:
                base, base_paths = _read_bases(path, names)
                cls._build(raw, str(path))  # an unknown key in this file names this file
                raw = _merge(base, raw)
                source = f"{path} (bases {', '.join(p.name for p in base_paths)})"
        if overrides:
            source = "command line" if path is None else f"{source} + command line"
        raw = apply_overrides(raw, overrides or [])
        return cls.from_dict(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested data (safe for YAML, JSON and ``torch.load(weights_only=True)``); the
        model and data sections hold the family's and the dataset's settings given or used
        (``model: {ssn: {rank: 10}}``, ``data: {shapes: {train_size: 2000, ...}}``)."""
        out = asdict(self)
        for name, section in (("model", self.model), ("data", self.data)):
            out[name].update(section.settings_dict())
        return out

    def to_yaml(self, path: str | Path) -> None:
        """Write the resolved config."""
        with open(path, "w") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


def check_encoder_name(name: str) -> None:
    """Raise :class:`ConfigError` unless ``model.encoder_name`` names an smp (or ``tu-`` timm) encoder.

    Not part of :meth:`Config.validate`, because it imports smp (seconds); the trainer and
    ``model_from_checkpoint`` call it before building a model.
    """
    import segmentation_models_pytorch as smp

    if name.startswith("tu-"):
        import timm

        if not timm.is_model(name[3:]):
            raise ConfigError(
                f"model.encoder_name: timm has no model {name[3:]!r} (tu-<name> takes a timm model "
                f"name, e.g. tu-resnet18), got {name!r}"
            )
        return
    names = smp.encoders.get_encoder_names()
    if name not in names:
        close = [n for n in names if n.startswith(name[:4])][:8]
        raise ConfigError(
            f"model.encoder_name: expected an smp encoder name (e.g. {', '.join(close or names[:8])}; "
            f"{len(names)} in all, or tu-<timm model>), got {name!r}"
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    """A config file's sections, flat keys of before nested (:mod:`segcvae.config.legacy`)."""
    if path.is_dir():
        raise ConfigError(
            f"config {path} is a folder; expected a YAML file such as configs/lfw_hybrid.yaml"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return nest_legacy_keys(raw, str(path))


def _read_bases(path: Path, names: Any) -> tuple[dict[str, Any], list[Path]]:
    """The bases a config names (``_base_``: a file or a list of files relative to its folder),
    merged in order.

    A base has no base of its own, and two bases may not set the same key to different values
    (each says one thing: a dataset, a model size, a schedule); the config itself overrides any.

    Returns:
        The merged sections and the base paths.
    """
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(
            f"{path}: {BASE_KEY}: expected a file name or a list of file names, got {names!r}"
        )
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, str], Path] = {}
    paths = []
    for name in names:
        base_path = path.parent / name
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY}: base config not found: {base_path}")
        base = _read_yaml(base_path)
        if BASE_KEY in base:
            raise ConfigError(
                f"{path}: {BASE_KEY}: {base_path} has a {BASE_KEY} of its own; a base is one "
                "level deep (name both files in this config's list instead)"
            )
        Config._build(base, str(base_path))  # an unknown key in the base names the base
        for section, values in base.items():
            for key, value in (values or {}).items():
                first = origin.setdefault((section, key), base_path)
                if first != base_path and merged[section][key] != value:
                    raise ConfigError(
                        f"{path}: {BASE_KEY}: {section}.{key} is set by both {first} "
                        f"({merged[section][key]!r}) and {base_path} ({value!r}); set it in one "
                        "base, or in this config"
                    )
        merged = _merge(merged, base)
        paths.append(base_path)
    return merged, paths


def _group_names(section: str) -> list[str]:
    """The names of the settings groups a section holds (model: families, data: datasets)."""
    cls = {f.name: f.default_factory for f in fields(Config)}.get(section)  # type: ignore[misc]
    return cls.group_names() if isinstance(cls, type) and issubclass(cls, SettingsGroups) else []


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Sections of ``child`` merged key by key over those of ``base``; a family's or a dataset's
    settings (``model.ssn``, ``data.shapes``) merge key by key too."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in child.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            for key, value in values.items():
                old = merged[section].get(key)
                if (
                    isinstance(value, dict)
                    and isinstance(old, dict)
                    and key in _group_names(section)
                ):
                    merged[section][key] = {**old, **value}
                else:
                    merged[section][key] = value
        else:
            merged[section] = values
    return merged


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (a leading ``--`` is allowed); values are YAML.

    ``model.ssn.rank=5`` sets a family's setting, ``data.shapes.seed=1`` a dataset's; a flat key
    of before (``data.shapes_seed=1``) sets the same (:mod:`segcvae.config.legacy`).
    """
    raw = {k: dict(v or {}) for k, v in raw.items()} if raw else {}
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, value = text.split("=", 1)
        section, *path, name = key.split(".")
        if not path and legacy_path(section, name) is not None:
            path, name = [legacy_path(section, name)[0]], legacy_path(section, name)[1]  # type: ignore[index]
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"override {item!r}: section {section!r} is not a mapping")
        for part in path:  # model.ssn.rank=5: the family's settings
            target[part] = dict(target[part]) if isinstance(target.get(part), dict) else {}
            target = target[part]
        target[name] = yaml.safe_load(value) if value != "" else ""
    return raw


def _build_section(section_cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(section_cls)
    valid = [f.name for f in fields(section_cls)]
    groups = section_cls.group_names() if issubclass(section_cls, SettingsGroups) else []
    kwargs, settings = {}, {}
    for key, value in values.items():
        if key in groups:
            settings[key] = _build_settings(section_cls, key, value, f"{where}.{key}")
            continue
        if key not in hints or key not in valid:
            more = ""
            if groups:
                kind = section_cls.kind  # type: ignore[attr-defined]
                more = f"; a {kind}'s settings: {where.split(': ')[-1]}.<{'|'.join(groups)}>"
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}{more}")
        kwargs[key] = check_type(value, hints[key], f"{where}.{key}")
    section = section_cls(**kwargs)
    for name, value in settings.items():
        section.set_settings(name, value)
    return section


def _build_settings(section_cls: Any, group: str, values: Any, where: str) -> Any:
    """A family's or a dataset's settings dataclass from its mapping (types checked)."""
    cls = section_cls.group_settings(group)
    kind = section_cls.kind
    if cls is None:
        raise ConfigError(f"{where}: the {kind} {group!r} has no settings of its own")
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of {group}'s settings, got {values!r}")
    return _build_section(cls, values, where)


__all__ = ["BASE_KEY", "Config", "apply_overrides", "check_encoder_name"]
