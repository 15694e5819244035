"""train -> evaluate -> predict on the embedded shapes data, through the command-line functions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from segcvae.cli import evaluate_main, main, predict_main, train_main
from tests.tools.conftest import TINY, subprocess_env

pytestmark = pytest.mark.slow  # train / evaluate / predict end to end, subprocesses


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    torch.set_num_threads(1)
    code = train_main(
        [
            "--out",
            str(out),
            "train.steps=4",
            "train.eval_every=2",
            "train.checkpoint_every=2",
            *TINY,
        ]
    )
    assert code == 0
    return out


def test_train_writes_the_run_folder(run_dir: Path) -> None:
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl", "curves.png"):
        assert (run_dir / name).is_file(), name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert {"loss", "nll", "kl"} <= set(r["train"])
        assert {
            "pixel_accuracy",
            "mean_iou",
            "per_class_iou",
            "nll",
            "nll_mc",
            "ged",
            "hm_iou",
        } <= set(r["val"])
        assert r["images_per_s"] > 0
    grids = sorted((run_dir / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_0000002.png", "step_0000004.png"]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["step"] == 4 and last["config"]["train"]["steps"] == 4
    assert last["meta"]["class_names"][0] == "background"
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["best_metric"] == pytest.approx(max(r["val"]["mean_iou"] for r in records))


def test_evaluate_prints_a_table_and_writes_json(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    grid = tmp_path / "grid.png"
    code = evaluate_main(
        [
            "--ckpt",
            str(run_dir / "best.pt"),
            "--samples",
            "3",
            "--json",
            str(out),
            "--grid",
            str(grid),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "mean_iou" in table and "iou/background" in table
    report = json.loads(out.read_text())
    for key in ("pixel_accuracy", "mean_iou", "per_class_iou", "nll", "nll_mc", "ged", "hm_iou"):
        assert key in report, key
    assert report["split"] == "test" and report["samples"] == 3 and report["images"] == 4
    assert len(report["per_class_iou"]) == len(report["class_names"])
    assert report["nll"] > 0 and np.isfinite(report["nll"])
    assert grid.is_file()


def test_evaluate_with_omission_changes_the_images(run_dir: Path, tmp_path: Path) -> None:
    reports = []
    for extra in ([], ["--omission"]):
        out = tmp_path / f"e{len(extra)}.json"
        assert (
            evaluate_main(
                ["--ckpt", str(run_dir / "last.pt"), "--samples", "2", "--json", str(out), *extra]
            )
            == 0
        )
        reports.append(json.loads(out.read_text()))
    assert reports[1]["omission"] is True
    assert reports[0]["nll"] != reports[1]["nll"]


def _write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 256, (50, 70), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 256, (40, 30, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (33, 90, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "photo.jpg"), rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return {"gray": (70, 50), "rgba": (30, 40), "deep": (90, 33), "photo": (200, 300)}


def test_predict_writes_outputs_and_reports_unreadable_inputs(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    sizes = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    code = predict_main(
        [
            "--ckpt",
            str(run_dir / "best.pt"),
            "--input",
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--samples",
            "4",
        ]
    )
    assert code == 2  # one input is unreadable (the user's input: exit 2) ...
    err = capsys.readouterr().err
    assert "broken.png" in err
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    k = ckpt["meta"]["num_classes"]
    for stem, size in sizes.items():  # ... and the others are still done
        mask = Image.open(out / f"{stem}_mask.png")
        assert mask.mode == "P" and mask.size == size
        assert np.asarray(mask).max() < k
        assert mask.getpalette()[:3] == list(ckpt["meta"]["palette"][0])
        assert Image.open(out / f"{stem}_overlay.png").size == size
        assert Image.open(out / f"{stem}_uncertainty.png").size == size
        assert Image.open(out / f"{stem}_foreground.png").size == size
        w, h = Image.open(out / f"{stem}_samples.png").size
        assert w > size[0] or h > size[1]  # a grid of 4
    assert not list(out.glob("broken*"))


def test_predict_glob_and_console_script(run_dir: Path, tmp_path: Path) -> None:
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "--ckpt",
            str(run_dir / "last.pt"),
            "--input",
            str(tmp_path / "in" / "g*.png"),
            "--out",
            str(out),
            "--samples",
            "2",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "gray_foreground.png",
        "gray_mask.png",
        "gray_overlay.png",
        "gray_samples.png",
        "gray_uncertainty.png",
    ]


def test_installed_console_script_runs() -> None:
    beside = Path(sys.executable).parent / "segcvae"
    exe = str(beside) if beside.is_file() else shutil.which("segcvae")
    if exe is None:
        pytest.skip("console script not installed (pip install -e .)")
    res = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert res.returncode == 0 and "evaluate" in res.stdout
