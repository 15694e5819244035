"""Fixtures for the toy tests: the real MNIST files, and small idx copies of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

MNIST = SHARED_DATA / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST}")
    return MNIST


@pytest.fixture(scope="session")
def small_mnist(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 1,200 training and 300 test digits of the real files, as raw (ungzipped) idx."""
    from segcvae.toy.mnist import load_mnist, write_idx

    root = tmp_path_factory.mktemp("mnist_small")
    images, labels = load_mnist(mnist_dir, "test")
    write_idx(root / "t10k-images-idx3-ubyte", images[:300].numpy())
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:300].numpy().astype(np.uint8))
    # the test split's later digits stand in for training digits: reading the 60,000 costs seconds
    write_idx(root / "train-images-idx3-ubyte", images[-1200:].numpy())
    write_idx(root / "train-labels-idx1-ubyte", labels[-1200:].numpy().astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def digits(mnist_dir: Path):
    """2,000 real test digits, threshold-binarised and flattened (Digits: x (N, 784), labels)."""
    from segcvae.toy.common import load_digits

    return load_digits(mnist_dir, "test", "threshold", limit=2000)
