"""Fixtures for the API, export and demo tests: tiny checkpoints and real photographs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segcvae.data.shapes import CLASS_COLOURS
from segcvae.engine.checkpoint import save_checkpoint
from segcvae.models import create_model
from tests.conftest import SHARED_DATA, tiny_config

LFW_IMAGE = SHARED_DATA / "lfw" / "lfw_funneled" / "Sandy_Smith" / "Sandy_Smith_0001.jpg"
CUB_IMAGE = (
    SHARED_DATA
    / "cub"
    / "CUB_200_2011"
    / "images"
    / "002.Laysan_Albatross"
    / "Laysan_Albatross_0061_563.jpg"
)
NUM_CLASSES = 4  # shapes: background + 3


def write_tiny_checkpoint(path: Path, objective: str = "hybrid", seed: int = 0) -> Path:
    """An untrained tiny model (32x32 input) saved as a real checkpoint; enough for equality checks.

    The generation head is re-drawn with a larger scale and the prior widened, so that the hypotheses of an
    untrained model differ from each other and from the mean (as after training).
    """
    torch.manual_seed(seed)
    cfg = tiny_config(objective)
    model = create_model(cfg, NUM_CLASSES)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("generation_net."):
                p.normal_(0.0, 0.3)
            elif name == "prior_net.to_params.bias":
                p[p.numel() // 2 :] = 2.0  # log-variance 2 (std 2.7): a wide prior
    names = ["background"] + [n for n, _ in CLASS_COLOURS[: NUM_CLASSES - 1]]
    palette = [[0, 0, 0]] + [list(c) for _, c in CLASS_COLOURS[: NUM_CLASSES - 1]]
    save_checkpoint(
        path,
        model=model,
        step=0,
        config=cfg.to_dict(),
        meta={"num_classes": NUM_CLASSES, "class_names": names, "palette": palette},
    )
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny hybrid SegCVAE checkpoint."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "hybrid.pt", "hybrid")


@pytest.fixture(scope="session")
def real_image() -> Path:
    """A real LFW photograph (250x250 JPEG)."""
    if not LFW_IMAGE.is_file():
        pytest.skip(f"real data not found: {LFW_IMAGE}")
    return LFW_IMAGE


@pytest.fixture(scope="session")
def real_image_wide() -> Path:
    """A real CUB photograph (not square)."""
    if not CUB_IMAGE.is_file():
        pytest.skip(f"real data not found: {CUB_IMAGE}")
    return CUB_IMAGE
