"""Fixtures for the data tests: the real data (``tests.conftest.SHARED_DATA``), extracted once per session."""

from __future__ import annotations

import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from segcvae.config import DataConfig
from tests.conftest import SHARED_DATA, data_cfg

CUB_TEST_CLASSES = [1, 2, 9]  # 179 real images; class 9 holds a grayscale photograph


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets (``../shared/data``, or ``$SEGCVAE_SHARED_DATA``)."""
    path = SHARED_DATA
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="session")
def lfw_root(shared_data: Path) -> Path:
    root = shared_data / "lfw"
    if not (root / "parts_lfw_funneled_gt_images.tgz").is_file():
        pytest.skip(f"LFW Part Labels not found in {root}")
    return root


@pytest.fixture(scope="session")
def lfw_masks(lfw_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official label archive, extracted once per session into a temporary folder."""
    out = tmp_path_factory.mktemp("lfw_labels")
    with tarfile.open(lfw_root / "parts_lfw_funneled_gt_images.tgz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(out, filter="data")
        else:  # Python without extraction filters; the archive is the official one
            tar.extractall(out)
    return out / "parts_lfw_funneled_gt_images"


@pytest.fixture(scope="session")
def lfw_cfg(lfw_root: Path, lfw_masks: Path) -> DataConfig:
    return data_cfg(name="lfw", root=str(lfw_root), lfw_masks=str(lfw_masks), image_size=128)


@pytest.fixture
def tiny_lfw(lfw_root: Path, lfw_masks: Path, tmp_path: Path) -> Path:
    """A writable LFW root with four real image/label pairs in the official layout."""
    ids = ["Aaron_Peirsol_0001", "Aaron_Peirsol_0002", "AJ_Cook_0001", "Dianne_Feinstein_0002"]
    (tmp_path / "parts_lfw_funneled_gt_images").mkdir()
    for item_id in ids:
        name = item_id[:-5]
        (tmp_path / "lfw_funneled" / name).mkdir(parents=True, exist_ok=True)
        src = lfw_root / "lfw_funneled" / name / f"{item_id}.jpg"
        (tmp_path / "lfw_funneled" / name / f"{item_id}.jpg").write_bytes(src.read_bytes())
        label = (lfw_masks / f"{item_id}.ppm").read_bytes()
        (tmp_path / "parts_lfw_funneled_gt_images" / f"{item_id}.ppm").write_bytes(label)
    (tmp_path / "parts_train.txt").write_text("Aaron_Peirsol 0001\nAaron_Peirsol 2\n")
    (tmp_path / "parts_validation.txt").write_text("AJ_Cook 0001\n")
    (tmp_path / "parts_test.txt").write_text("Dianne_Feinstein 0002\n")
    return tmp_path


@pytest.fixture(scope="session")
def cub_root(shared_data: Path) -> Path:
    root = shared_data / "cub"
    if not (root / "CUB_200_2011" / "images.txt").is_file():
        pytest.skip(f"CUB-200-2011 not found in {root}")
    return root


@pytest.fixture(scope="session")
def cub_segmentations(cub_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Masks in the official layout for the real images of CUB_TEST_CLASSES.

    Each mask is 200 inside the ellipse inscribed in the bounding box and 100 in a ring around it
    (an "uncertain" annotator average, below the default threshold of 128), 0 elsewhere.
    """
    out = tmp_path_factory.mktemp("cub") / "segmentations"
    meta = cub_root / "CUB_200_2011"
    paths = dict(line.split() for line in (meta / "images.txt").read_text().splitlines())
    boxes = {
        line.split()[0]: [float(v) for v in line.split()[1:]]
        for line in (meta / "bounding_boxes.txt").read_text().splitlines()
    }
    for image_id, rel in paths.items():
        if int(rel[:3]) not in CUB_TEST_CLASSES:
            continue
        image = cv2.imread(str(meta / "images" / rel), cv2.IMREAD_UNCHANGED)
        x, y, w, h = boxes[image_id]
        centre = (round(x + w / 2), round(y + h / 2))
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.ellipse(mask, centre, (round(w / 2 + 6), round(h / 2 + 6)), 0, 0, 360, 100, -1)
        cv2.ellipse(mask, centre, (round(w / 2), round(h / 2)), 0, 0, 360, 200, -1)
        target = out / rel[: -len(".jpg")]
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target) + ".png", mask)
    return out


@pytest.fixture(scope="session")
def cub_cfg(cub_root: Path, cub_segmentations: Path) -> DataConfig:
    return data_cfg(
        name="cub",
        root=str(cub_root),
        cub_segmentations=str(cub_segmentations),
        cub_classes=list(CUB_TEST_CLASSES),
        image_size=128,
    )
