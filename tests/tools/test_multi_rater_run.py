"""train -> evaluate on a multi-rater folder (one mask folder per rater) with every rater a step."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segcvae.cli import evaluate_main, train_main
from tests.tools.conftest import TINY

pytestmark = pytest.mark.slow  # a training run end to end


def _raters_folder(root: Path, n: int = 10) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for name in ("r1", "r2", "r3"):
        (root / "masks" / name).mkdir(parents=True)
    for k in range(n):
        image = rng.integers(0, 60, (32, 32, 3), np.uint8)
        image[8:24, 8:24] = 200
        cv2.imwrite(str(root / "images" / f"im{k}.png"), image)
        for j, name in enumerate(("r1", "r2", "r3")):
            if name == "r3" and k % 2:  # half of the images have only two raters
                continue
            mask = np.zeros((32, 32), np.uint8)
            mask[8 - j : 24 + j, 8:24] = 255  # 0/255 masks: read with data.folder.binary_threshold
            cv2.imwrite(str(root / "masks" / name / f"im{k}.png"), mask)
    return root


def test_train_on_every_rater_then_evaluate_all_keys(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    root = _raters_folder(tmp_path / "set")
    data = [
        "data.name=folder",
        f"data.root={root}",
        "data.folder.layout=per_rater",
        "data.folder.binary_threshold=128",
        "data.folder.val_ratio=0.2",
        "data.folder.test_ratio=0.2",
    ]
    out = tmp_path / "run"
    args = ["--out", str(out), "train.steps=3", "train.eval_every=3", "train.rater=all"]
    # a spatial Gaussian z: its hypotheses differ after 3 steps, so NCC (undefined for a flat
    # uncertainty map) is reported
    args += ["loss.objective=hybrid", "model.latent=spatial", "model.generation=quarter"]
    assert train_main([*args, *TINY, *data]) == 0
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"ged", "ncc", "soft_dice", "ece", "diversity", "rater_pairwise_iou"} <= set(
        record["val"]
    )
    capsys.readouterr()
    report = tmp_path / "test.json"
    code = evaluate_main(
        [
            "--ckpt",
            str(out / "best.pt"),
            "--split",
            "test",
            "--json",
            str(report),
            "--hypotheses",
            "4",
            "eval.extra_ged_hypotheses=6",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| metric | value | meaning |" in printed and "| soft_dice |" in printed
    result = json.loads(report.read_text())
    for key in (
        "ged",
        "ged_6",
        "hm_iou",
        "ncc",
        "soft_dice",
        "ece",
        "nll",
        "diversity",
        "rater_pairwise_iou",
        "pixel_accuracy_raters",
        "mean_iou_raters",
        "pixel_accuracy_majority",
        "mean_iou_majority",
    ):
        assert key in result, key
    assert "mode_purity" not in result  # raters are a sample, not the complete set of modes
    assert isinstance(result["ncc"], float) and "undefined" not in result  # defined: a number
    assert 0.0 <= result["rater_pairwise_iou"] < 1.0
