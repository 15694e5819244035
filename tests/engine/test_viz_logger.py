"""Pictures and run logs: palette PNGs keep class indices, curves and grids are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segcvae import viz
from segcvae.engine.logger import RunLogger

PALETTE = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]


def test_label_png_keeps_indices_and_palette(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    viz.save_label_png(tmp_path / "m.png", labels, PALETTE)
    im = Image.open(tmp_path / "m.png")
    assert im.mode == "P"
    assert np.array_equal(np.asarray(im), labels)
    assert np.array_equal(np.asarray(im.convert("RGB"))[1, 0], [255, 0, 0])


def test_colorize_overlay_heatmap_shapes() -> None:
    labels = np.array([[0, 255], [2, 1]])
    rgb = viz.colorize(labels, PALETTE)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == viz.IGNORE_COLOUR
    img = np.full((2, 2, 3), 100, np.uint8)
    assert viz.overlay(img, labels, PALETTE, alpha=0.0).tolist() == img.tolist()
    heat = viz.heatmap(torch.tensor([[0.0, 1.0]]), vmax=1.0)
    assert heat.shape == (1, 2, 3) and not np.array_equal(heat[0, 0], heat[0, 1])
    grid = viz.tile([rgb] * 3, ncols=2, pad=1)
    assert grid.shape == (5, 5, 3)


def test_denormalize_inverts_normalisation() -> None:
    img = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    x = (
        torch.from_numpy(img).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]
    ) / torch.tensor(std)[:, None, None]
    assert np.array_equal(viz.denormalize(x, mean, std), img)


def test_validation_grid_and_curves(tmp_path: Path) -> None:
    n, h, w = 2, 8, 8
    lab = np.zeros((h, w), np.int64)
    fig = viz.validation_grid(
        images=[np.zeros((h, w, 3), np.uint8)] * n,
        targets=[lab] * n,
        predictions=[lab] * n,
        hypotheses=[[lab, lab]] * n,
        entropy=[np.zeros((h, w))] * n,
        palette=PALETTE,
        max_entropy=np.log(3),
        title="t",
    )
    viz.save_figure(fig, tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size[0] > 100


def test_run_logger_writes_jsonl_curves_and_truncates(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path)
    for step in (10, 20, 30):
        logger.log(
            {
                "step": step,
                "train": {"loss": 1.0 / step, "kl": float("nan")},
                "val": {"mean_iou": step / 100, "per_class_iou": [0.1, float("nan")]},
            }
        )
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [10, 20, 30]
    assert json.loads(lines[0])["val"]["per_class_iou"] == [0.1, None]  # NaN -> null: valid JSON
    assert (tmp_path / "curves.png").stat().st_size > 1000
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 40, "tra')  # a line cut short by a kill
    for step in (5, 15, 25):
        logger.log_train({"step": step, "train": {"loss": 1.0}})
    logger.truncate_after(20)
    assert [r["step"] for r in logger.records()] == [10, 20]
    assert [r["step"] for r in logger.train_records()] == [5, 15]
    logger.close()


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, enabled=False)
    logger.log({"step": 1, "train": {"loss": 1.0}, "val": {}})
    assert list(tmp_path.iterdir()) == []


def test_tensorboard_events_when_available(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    scalars = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step) -> None:
            scalars.append((tag, value, step))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    logger = RunLogger(tmp_path)
    logger.log(
        {
            "step": 5,
            "lr": 0.1,
            "train": {"loss": 2.0},
            "val": {"mean_iou": 0.5, "per_class_iou": [1.0]},
        }
    )
    assert (
        ("train/loss", 2.0, 5) in scalars
        and ("val/mean_iou", 0.5, 5) in scalars
        and ("lr", 0.1, 5) in scalars
    )
    assert not any(tag == "val/per_class_iou" for tag, _, _ in scalars)
