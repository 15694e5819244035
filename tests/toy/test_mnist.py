import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from segcvae.toy.mnist import binarize, load_mnist, read_idx, write_idx

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_files_shapes_and_label_counts(mnist_dir):
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        images, labels = load_mnist(mnist_dir, split)
        assert images.shape == (sum(counts), 28, 28) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert labels.bincount(minlength=10).tolist() == counts
        assert images.max() == 255 and images.min() == 0


def test_raw_equals_gzip(mnist_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir / f"{name}.gz") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    raw_images, raw_labels = load_mnist(tmp_path, "test")
    gz_images, gz_labels = load_mnist(mnist_dir, "test")
    assert torch.equal(raw_images, gz_images) and torch.equal(raw_labels, gz_labels)


def _copy(src: Path, dst: Path, transform) -> Path:
    dst.write_bytes(transform(src.read_bytes()))
    return dst


@pytest.mark.parametrize(
    "name, transform, message",
    [
        ("truncated.gz", lambda b: b[: len(b) // 2], "cannot read"),  # gzip stream cut short
        ("truncated-raw", lambda b: gzip.decompress(b)[:-100], "truncated"),
        ("long-raw", lambda b: gzip.decompress(b) + b"\0", "trailing"),
        ("magic-raw", lambda b: b"\x08\x03" + gzip.decompress(b)[2:], "magic"),
        ("header-raw", lambda b: gzip.decompress(b)[:10], "truncated"),
        ("garbage.gz", lambda b: b[:10] + bytes(200), "cannot read"),
        ("empty", lambda b: b"", "magic"),
    ],
)
def test_corrupt_file_raises_naming_it(mnist_dir, tmp_path, name, transform, message):
    path = _copy(mnist_dir / "t10k-labels-idx1-ubyte.gz", tmp_path / name, transform)
    with pytest.raises(ValueError, match=message) as err:
        read_idx(path)
    assert name in str(err.value)


def test_missing_and_mismatched_files(tmp_path):
    with pytest.raises(ValueError, match="t10k-images"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(tmp_path, "test")
    with pytest.raises(KeyError, match="valid"):
        load_mnist(tmp_path, "val")


def test_idx_round_trip_other_dtypes(tmp_path):
    for array in (np.arange(6, dtype=np.int32).reshape(2, 3), np.random.rand(2, 2, 2)):
        for name in ("a.idx", "a.idx.gz"):
            write_idx(tmp_path / name, array)
            back = read_idx(tmp_path / name)
            assert back.dtype == array.dtype and np.array_equal(back, array)
    # a hand-written header, so the test does not only check write_idx against read_idx
    path = tmp_path / "b.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + np.array([7, -1], ">i4").tobytes())
    assert read_idx(path).tolist() == [7, -1]


def test_binarize():
    images = torch.tensor([[0, 127, 128, 255]], dtype=torch.uint8)
    assert binarize(images).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    x = torch.full((1000,), 0.3)
    a = binarize(x, "dynamic", torch.Generator().manual_seed(0))
    b = binarize(x, "dynamic", torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and 0.2 < a.mean() < 0.4
    with pytest.raises(KeyError, match="threshold"):
        binarize(x, "otsu")
