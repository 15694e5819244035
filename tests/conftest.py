"""Tiny CPU fixtures shared by the unit tests."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from segcvae.config import Config, DataConfig, apply_overrides

# Tiny test models gain nothing from a second thread, and two OpenMP threads competing with other
# processes on a 2-core machine can be many times slower; child processes (torchrun, kill/resume
# tests) inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

# The real datasets (MNIST, LFW, CUB, QUBIQ): ../shared/data beside the repository, or wherever
# SEGCVAE_SHARED_DATA points. Tests that need a dataset that is not there are skipped.
SHARED_DATA = Path(
    os.environ.get("SEGCVAE_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


# The tiny model of every unit and command-line test: timm's 82k-parameter test encoder on 32x32
# images builds and runs in milliseconds. tests/tools/conftest.py's TINY adds the run settings.
TINY_MODEL = [
    "data.image_size=32",
    "model.encoder_name=tu-test_efficientnet",
    "model.decoder_channels=[16,16,16,16,8]",
    "model.hidden_channels=16",
    "model.latent_channels=4",
]


def data_cfg(**values: Any) -> DataConfig:
    """A data section from keyword values, read as a config file's ``data:`` mapping would be
    (keys and types checked, ranges not): a dataset's settings as a mapping
    (``shapes={"train_size": 5}``); flat keys of before (``shapes_train_size=5``) read the same."""
    return Config._build({"data": values}, "test").data


def data_replace(cfg: DataConfig, **values: Any) -> DataConfig:
    """``cfg`` with ``values`` changed, as :func:`data_cfg` reads them (``dataclasses.replace``
    would drop the datasets' settings, which are not fields)."""
    from segcvae.config.legacy import nest_legacy_keys
    from segcvae.config.loader import _merge

    raw = {"data": {**asdict(cfg), **cfg.settings_dict()}}
    return Config._build(_merge(raw, nest_legacy_keys({"data": values}, "test")), "test").data


def tiny_config(objective: str = "hybrid", latent: str = "spatial") -> Config:
    """A config whose model builds and runs in milliseconds on 32x32 images (:data:`TINY_MODEL`).

    ``objective="cnn"`` gives the CNN family (``model.arch=cnn``); the others Sohn et al.'s CVAE.
    """
    cfg = Config.from_dict(apply_overrides({}, TINY_MODEL), "tests.conftest.TINY_MODEL")
    cfg.loss.objective = objective
    if objective == "cnn":
        cfg.model.arch = "cnn"
    cfg.loss.kl_warmup_steps = 0  # the KL (and so the prior) gets a gradient from the first step
    cfg.model.latent = latent
    return cfg


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two random 32x32 images and 3-class labels, with a few ignored pixels."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    y = torch.randint(0, 3, (2, 32, 32), generator=g)
    y[:, :2, :2] = 255
    return x, y
