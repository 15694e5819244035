"""Experiment configuration: a small tree of dataclasses, read from one flat YAML per experiment.

A YAML file has up to five sections (``data``, ``model``, ``loss``, ``train``, ``eval``), each a
mapping of keys to values; a model family's and a dataset's own settings are a mapping of their
own under ``model`` and ``data``, named like the family or the dataset
(``model: {arch: ssn, ssn: {rank: 10}}``, ``data: {name: shapes, shapes: {ambiguity: flip}}``;
override: ``data.shapes.ambiguity=flip``), declared next to their code (:mod:`segcvae.settings`). Command-line overrides use dotted keys (``train.lr=1e-3``). An unknown
section or key, or a value of the wrong type, raises :class:`ConfigError` naming the key and listing
the valid ones; so does a value out of its range (``train.lr=-1``, an ``image_size`` the encoder
cannot take), checked by each section's ``validate`` when the config loads, before any data is read.

Composition (mmseg's ``_base_``, one level): a YAML may name the files it extends with a top-level
``_base_: [a.yaml, b.yaml]`` (or one file; paths relative to the YAML's folder) and state only what
it is about. Small named bases say one thing each (a dataset, a model size, a schedule:
``configs/_base_/``); they are merged in order, may not contradict each other, and the YAML's own
sections are merged key by key over them. A base that itself has a ``_base_`` is an error, so
every experiment is at most two files deep.

Modules: ``checks`` (ConfigError and the type check), ``groups`` (the settings groups mechanism
shared by ``model`` and ``data``), ``data`` (the data section), ``sections`` (model, loss, train,
eval), ``legacy`` (keys of before), ``loader`` (Config, YAML, ``_base_``, overrides).

Example:
    >>> cfg = Config.from_yaml("configs/lfw_hybrid.yaml", ["train.steps=100"])
    >>> cfg.loss.objective
    'hybrid'
"""

from segcvae.config.checks import ConfigError
from segcvae.config.data import AUGMENT_PARTS, AUGMENT_PRESETS, DataConfig, augment_parts
from segcvae.config.legacy import LEGACY_DATA_KEYS, LEGACY_FAMILY_KEYS, LEGACY_KEYS
from segcvae.config.loader import BASE_KEY, Config, apply_overrides, check_encoder_name
from segcvae.config.sections import (
    HYPOTHESIS_METRICS,
    LIKELIHOOD_METRICS,
    SELECT_METRICS,
    EvalConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)

__all__ = [
    "AUGMENT_PARTS",
    "AUGMENT_PRESETS",
    "BASE_KEY",
    "HYPOTHESIS_METRICS",
    "LEGACY_DATA_KEYS",
    "LEGACY_FAMILY_KEYS",
    "LEGACY_KEYS",
    "LIKELIHOOD_METRICS",
    "SELECT_METRICS",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "augment_parts",
    "check_encoder_name",
]
