"""The application layer under the commands: ``segcvae.evaluate`` -> a report,
``Predictor.predict_files`` -> pictures of image files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segcvae
from segcvae.cli import evaluate_main
from segcvae.evaluation import EvaluationReport

SETTINGS = {"samples": 2, "hypotheses": 3, "max_images": 4}


@pytest.fixture(scope="module")
def report(tiny_ckpt: Path) -> EvaluationReport:
    return segcvae.evaluate(tiny_ckpt, keep_vis=True, **SETTINGS)


def test_the_report_says_what_was_evaluated(report: EvaluationReport, tiny_ckpt: Path) -> None:
    assert isinstance(report, segcvae.EvaluationReport)
    assert (report.arch, report.model, report.nll_estimator) == ("sohn", "hybrid", "is")
    assert (report.split, report.samples, report.hypotheses) == ("test", 2, 3)
    assert report.metrics["images"] == 4 and len(report.per_image) == 4
    assert report.title == f"{tiny_ckpt} (step 0, hybrid) on shapes/test"
    assert report.table().startswith("| metric | value | meaning |")


def test_its_json_is_what_the_command_writes(
    report: EvaluationReport, tiny_ckpt: Path, tmp_path: Path
) -> None:
    data = report.to_dict()
    head = ["checkpoint", "step", "arch", "model", "nll_estimator", "dataset", "split"]
    assert list(data)[:10] == [*head, "omission", "samples", "hypotheses"]
    assert list(data)[-1] == "class_names" and "per_image" not in data
    assert "objective" not in data  # the family's describe() names it: data["model"]
    assert json.loads(report.to_json()) == data
    assert len(report.to_dict(per_image=True)["per_image"]) == 4
    path = tmp_path / "cli.json"
    flags = ["--samples", "2", "--hypotheses", "3", "--max-images", "4", "--quiet"]
    assert evaluate_main(["--ckpt", str(tiny_ckpt), "--json", str(path), *flags]) == 0
    assert json.loads(path.read_text()) == data  # the same seed, the same numbers


def test_undefined_values_are_null_in_json(report: EvaluationReport) -> None:
    nan = EvaluationReport(
        **{**report.__dict__, "metrics": {"ged": math.nan, "x": [1.0, math.inf]}}
    )
    assert nan.to_dict()["ged"] is None and nan.to_dict()["x"] == [1.0, None]


def test_the_sample_grid(report: EvaluationReport, tmp_path: Path, tiny_ckpt: Path) -> None:
    path = report.save_grid(tmp_path / "deep" / "grid.png")
    assert path is not None and Image.open(path).size[0] > 32
    plain = segcvae.evaluate(tiny_ckpt, samples=0, hypotheses=2, max_images=2)
    assert plain.vis is None and plain.save_grid(tmp_path / "none.png") is None
    assert plain.nll_estimator is None and "nll" not in plain.metrics


def test_predict_files_writes_pictures_and_reports_unreadable_inputs(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    images = {}
    for folder in ("a", "b"):  # the same name in two folders: both kept
        (tmp_path / folder).mkdir()
        images[folder] = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(images[folder]).save(tmp_path / folder / "x.png")
    broken = tmp_path / "b" / "broken.png"
    broken.write_bytes(b"not an image")
    predictor = segcvae.load(tiny_ckpt, batch_size=2)
    seen = []
    done = predictor.predict_files(
        [tmp_path / "a" / "x.png", str(tmp_path / "b")],
        tmp_path / "out",
        samples=3,
        seed=0,
        on_error=lambda path, reason: seen.append((path, reason)),
    )
    assert list(done.failed) == [broken] and seen == [(broken, done.failed[broken])]
    assert "broken.png" in done.failed[broken]
    assert [p.name for p in done.written[tmp_path / "b" / "x.png"]][0] == "x_1_mask.png"
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == 10 and "x_mask.png" in written and "x_1_samples.png" in written
    expected = predictor(images["b"], samples=3, seed=0).mask
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "x_1_mask.png")), expected)
