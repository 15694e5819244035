import json
import runpy
import sys

import pytest

from segcvae.toy.cli import main

TINY = ["--quick", "--train-size", "600", "--test-size", "100", "--threads", "1"]


@pytest.mark.slow  # each command end to end on real digits
@pytest.mark.parametrize(
    "command, extra, figures",
    [
        ("vae", [], ["reconstructions", "latent", "manifold", "denoising"]),
        ("cvae", [], ["styles", "analogies"]),
        ("aae", ["--prior", "swiss_roll", "--labels"], ["latent", "samples"]),
    ],
)
def test_model_commands_write_figures_and_metrics(small_mnist, tmp_path, command, extra, figures):
    metrics = main([command, "--data", str(small_mnist), "--out", str(tmp_path), *TINY, *extra])
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for name in figures:
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    if command == "aae":
        assert metrics["prior"] == "swiss_roll" and "test_arm_accuracy" in metrics
    else:
        assert metrics["test_nll_is"] <= metrics["test_neg_elbo"] + 1.0


@pytest.mark.slow  # each command end to end on real digits
def test_quadrants_command_via_python_m(small_mnist, tmp_path, monkeypatch):
    quick_nets = ["--cnn-hidden", "64", "--hidden", "64", "--latent-dim", "8", "--n-samples", "5"]
    argv = [
        "python -m segcvae.toy",
        "quadrants",
        "--data",
        str(small_mnist),
        "--out",
        str(tmp_path),
        *TINY,
        *quick_nets,
        "--save",
        "--quadrant-weights",
        "1,1,1",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("segcvae.toy", run_name="__main__")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["models"]) == {"cnn", "gsnn", "cvae", "hybrid"}
    assert metrics["models"]["cvae"]["estimator"] == "is"
    assert metrics["models"]["gsnn"]["estimator"] == "mc"
    assert all(set(m["neg_cll"]) == {"1", "2", "3"} for m in metrics["models"].values())
    table = (tmp_path / "table.md").read_text()
    assert "| baseline (cnn), exact |" in table and "3 quadrants" in table
    for k in (1, 2, 3):
        assert (tmp_path / f"completions_{k}q.png").is_file()
    assert metrics["quadrant_weights"] == [1.0, 1.0, 1.0]

    # a second run reuses the saved baseline instead of training it again
    again = main(
        ["quadrants", "--data", str(small_mnist), "--out", str(tmp_path / "again"), *TINY]
        + [*quick_nets, "--models", "cvae", "--baseline", str(tmp_path / "cnn.pt")]
    )
    assert set(again["models"]) == {"cnn", "cvae"}
    assert again["models"]["cnn"]["neg_cll"] == {
        int(k): v for k, v in metrics["models"]["cnn"]["neg_cll"].items()
    }


def test_bad_quadrant_options_are_errors(small_mnist, tmp_path):
    base = ["quadrants", "--data", str(small_mnist), "--out", str(tmp_path)]
    with pytest.raises(KeyError, match="valid"):
        main([*base, "--models", "vae"])
    with pytest.raises(ValueError, match="quadrant_weights"):
        main([*base, "--quadrant-weights", "1,1"])
