"""Tiny settings for command-line tests: a whole run takes a few seconds on one CPU thread."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]

# Command-line overrides of a run that trains in seconds: 32x32 shapes, timm's tiny test encoder.
TINY = [
    *TINY_MODEL,
    "data.shapes.train_size=16",
    "data.shapes.val_size=4",
    "data.shapes.test_size=4",
    "train.batch_size=4",
    "train.log_every=2",
    "train.device=cpu",
    "eval.batch_size=4",
    "eval.samples=2",
    "eval.hypotheses=3",
    "eval.num_vis=2",
]


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: one thread each (the test machine has two cores)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def python() -> str:
    return sys.executable
