"""train -> evaluate -> predict for the Probabilistic U-Net, SSN, MC dropout and the ensemble, through
the command-line functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segcvae.cli import evaluate_main, predict_main, train_main
from tests.tools.conftest import TINY

pytestmark = pytest.mark.slow  # train / evaluate / predict each family end to end


@pytest.mark.parametrize("arch", ["prob_unet", "ssn", "mc_dropout", "ensemble"])
def test_train_evaluate_predict(arch: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    overrides = ["train.steps=4", "train.eval_every=2", "train.checkpoint_every=2", *TINY]
    assert (
        train_main(["--out", str(run), f"model.arch={arch}", "model.ssn.mc_samples=4", *overrides])
        == 0
    )
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert np.isfinite(r["train"]["loss"])
        assert {"mean_iou", "nll", "nll_mc", "ged", "hm_iou"} <= set(r["val"])
    assert torch.load(run / "best.pt", weights_only=True)["config"]["model"]["arch"] == arch

    report_path = tmp_path / "test.json"
    assert (
        evaluate_main(
            ["--ckpt", str(run / "best.pt"), "--samples", "3", "--json", str(report_path)]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["arch"] == arch and report["images"] == 4
    assert report["nll"] > 0 and np.isfinite(report["nll"]) and np.isfinite(report["ged"])
    if arch != "prob_unet":  # one estimator: Monte Carlo (ssn, mc_dropout) or exact (ensemble)
        assert report["nll"] == report["nll_mc"]

    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(
        tmp_path / "in" / "a.png"
    )
    out = tmp_path / "out"
    code = predict_main(
        [
            "--ckpt",
            str(run / "last.pt"),
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--samples",
            "3",
        ]
    )
    assert code == 0
    assert Image.open(out / "a_mask.png").size == (45, 30)


@pytest.mark.parametrize("arch", ["mc_dropout", "ensemble"])
def test_the_baselines_cross_validate(arch: str, tmp_path: Path) -> None:
    from segcvae.cli import crossval_main

    torch.set_num_threads(1)
    out = tmp_path / "cv"
    fast = ["train.steps=2", "train.eval_every=2", "eval.samples=2", "eval.hypotheses=4", *TINY]
    args = ["--folds", "2", "--out", str(out), "--no-progress", f"model.arch={arch}", *fast]
    assert crossval_main(args) == 0
    summary = json.loads((out / "crossval.json").read_text())
    assert summary["folds_done"] == [0, 1] and summary["cases"] == 24
    assert np.isfinite(summary["pooled"]["ged"]) and summary["pooled"]["nll"] > 0
