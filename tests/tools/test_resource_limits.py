"""Issue 31, item 7: hypotheses or samples that would not fit in memory are refused before
allocating, with one line naming the key or flag, the bytes and the limit (exit status 2); many
likelihood samples are only slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import segcvae
from segcvae.cli import USAGE_ERROR, main
from segcvae.engine.memory import MemoryLimitError
from tests.api.conftest import write_tiny_checkpoint
from tests.tools.conftest import TINY

HUGE = "100000"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "args, named",
    [
        (["--hypotheses", HUGE], "--hypotheses=100000"),
        ([f"eval.hypotheses={HUGE}"], "eval.hypotheses=100000"),
        (["eval.extra_ged_hypotheses=1000000"], "eval.extra_ged_hypotheses=1000000"),
    ],
)
def test_evaluate_refuses_hypotheses_that_cannot_fit(
    ckpt: Path, tmp_path: Path, capsys, args: list[str], named: str
) -> None:
    report = tmp_path / "r.json"
    code = main(["evaluate", "--ckpt", str(ckpt), "--json", str(report), *args])
    out, err = capsys.readouterr()
    line = _one_line(err)
    assert code == USAGE_ERROR and out == "" and not report.exists()
    assert line.startswith(f"error: {named}: ") and "B of memory at once" in line
    assert "more than the limit of" in line and "available now on cpu" in line


def test_train_refuses_them_before_the_run_folder_exists(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), *TINY, f"eval.hypotheses={HUGE}"])
    assert code == USAGE_ERROR and not out.exists()
    assert _one_line(capsys.readouterr().err).startswith("error: eval.hypotheses=100000: ")


def test_predict_refuses_samples_that_cannot_fit(ckpt: Path, tmp_path: Path, capsys) -> None:
    from segcvae import viz

    image = tmp_path / "im.png"
    viz.save_png(image, np.zeros((40, 30, 3), np.uint8))
    argv = ["predict", "--ckpt", str(ckpt), "--input", str(image), "--out", str(tmp_path / "o")]
    assert main([*argv, "--samples", "1000000000"]) == USAGE_ERROR
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: --samples=1000000000: ") and "TB of memory at once" in line
    assert not list((tmp_path / "o").glob("*.png"))
    predictor = segcvae.load(ckpt)
    with pytest.raises(MemoryLimitError, match=r"^samples=10000000: 10000000 hypotheses"):
        predictor(np.zeros((400, 300, 3), np.uint8), samples=10_000_000)


def test_many_likelihood_samples_are_not_refused(ckpt: Path, monkeypatch) -> None:
    """S above a round is drawn in rounds (tests/engine/test_memory.py): the same estimator."""
    import segcvae.metrics.likelihood as likelihood

    monkeypatch.setattr(likelihood, "SAMPLES_PER_ROUND", 3)
    report = segcvae.evaluate(ckpt, samples=7, hypotheses=0, max_images=2)
    assert report.nll_estimator == "is" and np.isfinite(report.metrics["nll"])
    assert report.samples == 7
