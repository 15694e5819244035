"""Bad inputs a new user tries, each with the one-line message and exit code it must give.

Issue 10: 0/255 binary masks, an existing run folder, a diverging learning rate, a read-only
output, a NaN checkpoint, a text file as --ckpt, out-of-range settings; and issue 16: a user's
mistake is exit 2 with one line, a bug is an exception with its traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segcvae import cli
from segcvae.cli import evaluate_main, predict_main, train_main
from segcvae.engine.checkpoint import load_checkpoint
from tests.tools.conftest import TINY

FAST = ["train.steps=2", "train.eval_every=2", "train.checkpoint_every=2", *TINY]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train_main(["--out", str(out), *FAST]) == 0
    return out


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------ 1. 0/255 binary masks
def _binary_folder(root: Path, n: int = 10) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k in range(n):
        image = rng.integers(0, 255, (32, 32, 3), np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:24] = 255  # the common 0/255 convention
        cv2.imwrite(str(root / "images" / f"im{k}.png"), image)
        cv2.imwrite(str(root / "masks" / f"im{k}.png"), mask)
    return root


def test_binary_0_255_masks_are_refused_before_training(tmp_path: Path, capsys) -> None:
    root = _binary_folder(tmp_path / "data")
    out = tmp_path / "r"
    code = train_main(
        [
            "--out",
            str(out),
            *FAST,
            "data.name=folder",
            f"data.root={root}",
            "data.folder.classes=[background, foreground]",
        ]
    )
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    # the mask reader names the first such file (the label scan of engine/batches.py would catch
    # what it lets through: tests/engine/test_label_check.py)
    assert "masks/im0.png: values [0, 255] found" in line
    assert "data.folder.binary_threshold=128" in line and "data.ignore_index" in line
    assert not (out / "last.pt").exists() and not (out / "metrics.jsonl").exists()


# ------------------------------------------------------------------------ 2. existing run folder
def test_training_into_an_existing_run_is_refused(run: Path, capsys) -> None:
    before = (run / "metrics.jsonl").read_text()
    best = (run / "best.pt").read_bytes()
    assert train_main(["--out", str(run), *FAST]) == 2
    line = _one_line(capsys.readouterr().err)
    assert str(run) in line and "--resume" in line and "new --out" in line
    assert "--overwrite" in line
    assert (run / "metrics.jsonl").read_text() == before and (run / "best.pt").read_bytes() == best


@pytest.mark.slow  # two training runs
def test_overwrite_replaces_the_old_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    assert train_main(["--out", str(out), *FAST]) == 0
    (out / "notes.txt").write_text("mine")
    args = ["--out", str(out), "train.steps=1", "train.eval_every=1", *TINY[:]]
    assert train_main([*args, "--overwrite"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]  # the old run's records are gone, not interleaved
    assert load_checkpoint(out / "last.pt")["step"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are removed
    assert train_main([*args, "--overwrite", "--resume"]) == 2
    assert "contradict" in capsys.readouterr().err


# ------------------------------------------------------------------------ 3. divergence
def test_a_diverging_learning_rate_stops_with_exit_1_and_no_bad_checkpoint(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "r"
    args = ["--out", str(out), *TINY, "train.lr=10", "train.steps=40", "train.eval_every=20"]
    code = train_main([*args, "train.checkpoint_every=5"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert "diverged" in line and "train.lr (now 10)" in line
    assert "no checkpoint was written" in line or "the newest checkpoint is" in line
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():  # whatever was written is healthy
            weights = load_checkpoint(out / name)["model"].values()
            assert all(float(w.abs().max()) < 1e6 for w in weights if w.is_floating_point())


# ------------------------------------------------------------------------ 4. paths and devices
def test_out_that_is_a_file(tmp_path: Path, run: Path, capsys) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert train_main(["--out", str(target), *FAST]) == 2
    assert "is an existing file" in _one_line(capsys.readouterr().err)
    image = tmp_path / "im.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    code = predict_main(
        ["--ckpt", str(run / "best.pt"), "--input", str(image), "--out", str(target)]
    )
    assert code == 2
    assert "--out" in _one_line(capsys.readouterr().err)


def test_evaluate_checks_its_outputs_before_evaluating(tmp_path: Path, run: Path, capsys) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    code = evaluate_main(["--ckpt", str(run / "best.pt"), "--json", str(blocker / "r.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""  # no metrics printed, so nothing looks like success
    assert "--json" in _one_line(err) and "is a file, not a folder" in err


def test_evaluate_into_a_read_only_folder(tmp_path: Path, run: Path, capsys, monkeypatch) -> None:
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(kwargs.get("dir")))

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)  # root ignores chmod
    code = evaluate_main(["--ckpt", str(run / "best.pt"), "--json", str(tmp_path / "r.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "Permission denied" in _one_line(err) and str(tmp_path) in err


def test_evaluate_writes_its_json_then_prints(tmp_path: Path, run: Path, capsys) -> None:
    path = tmp_path / "deep" / "r.json"
    assert evaluate_main(["--ckpt", str(run / "best.pt"), "--json", str(path), "--quiet"]) == 0
    assert json.loads(path.read_text())["step"] == 2
    assert "mean_iou" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(tmp_path: Path, run: Path, capsys) -> None:
    assert train_main(["--out", str(tmp_path / "r"), *FAST, "train.device=cuda"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "train.device='cuda'" in line and "no usable CUDA GPU" in line
    assert evaluate_main(["--ckpt", str(run / "best.pt"), "--device", "cuda"]) == 2
    assert "--device='cuda'" in _one_line(capsys.readouterr().err)


def test_a_checkpoint_with_nan_weights(tmp_path: Path, run: Path, capsys) -> None:
    ckpt = torch.load(run / "best.pt", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] * float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    assert evaluate_main(["--ckpt", str(tmp_path / "nan.pt")]) == 2
    err = capsys.readouterr().err
    line = _one_line(err)
    assert "nan.pt" in line and "NaN or inf" in line and name in line
    assert len(err) < 500  # not a tensor dump


def test_a_text_file_as_checkpoint(tmp_path: Path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert evaluate_main(["--ckpt", str(text)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "notes.txt is not a PyTorch checkpoint" in line
    assert evaluate_main(["--ckpt", str(tmp_path)]) == 2
    assert "is a folder" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------ 5. settings out of range
@pytest.mark.parametrize(
    "override, key, allowed",
    [
        ("train.lr=-1", "train.lr", "> 0"),
        ("train.lr=0", "train.lr", "> 0"),
        ("train.batch_size=0", "train.batch_size", ">= 1"),
        ("train.steps=0", "train.steps", ">= 1"),
        ("data.image_size=0", "data.image_size", "positive"),
        ("data.image_size=100", "data.image_size", "multiple of 32"),
    ],
)
def test_out_of_range_settings_stop_before_the_run_folder_exists(
    tmp_path: Path, capsys, override: str, key: str, allowed: str
) -> None:
    out = tmp_path / "r"
    assert train_main(["--out", str(out), *FAST, override]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{key}: expected" in line and allowed in line
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--samples", "0", "expected an integer >= 1, got 0"),
        ("--samples", "-3", "expected an integer >= 1, got -3"),
        ("--hypotheses", "-1", "expected an integer >= 0, got -1"),
        ("--batch-size", "0", "expected an integer >= 1, got 0"),
    ],
)
def test_evaluate_counts_are_checked_by_the_parser(
    tmp_path: Path, capsys, flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["--ckpt", str(tmp_path / "x.pt"), flag, value])
    assert exc.value.code == 2
    assert f"argument {flag}: {message}" in capsys.readouterr().err


def test_predict_samples_must_be_positive(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        predict_main(
            ["--ckpt", "x.pt", "--input", "a.png", "--out", str(tmp_path), "--samples", "0"]
        )
    assert "argument --samples: expected an integer >= 1" in capsys.readouterr().err


# ------------------------------------------------------------------------ mistakes vs bugs
def test_a_bug_keeps_its_traceback(tmp_path: Path, monkeypatch) -> None:
    import segcvae.engine.run as trainer

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(trainer, "train", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        train_main(["--out", str(tmp_path / "r"), *FAST])
    monkeypatch.setattr(trainer, "train", lambda *a, **k: {}["missing"])
    with pytest.raises(KeyError):
        train_main(["--out", str(tmp_path / "r2"), *FAST])


def test_user_mistakes_are_the_named_error_types() -> None:
    from segcvae.config import ConfigError
    from segcvae.data import DataError
    from segcvae.engine.checkpoint import CheckpointError

    errors = cli._errors()
    assert {ConfigError, DataError, CheckpointError} <= set(errors)
    assert ValueError not in errors and KeyError not in errors and RuntimeError not in errors


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.encoder_name=resnet19", "model.encoder_name: expected an smp encoder name"),
        ("model.encoder_name=tu-nonet", "model.encoder_name: timm has no model 'nonet'"),
        ("data.shapes.completions=8", "data.image_size=32 is too small for"),
    ],
)
def test_mistakes_found_while_building_are_one_line(
    tmp_path: Path, capsys, override: str, message: str
) -> None:
    assert train_main(["--out", str(tmp_path / "r"), *FAST, override]) == 2
    assert message in _one_line(capsys.readouterr().err)
