"""One exit-code rule for every command (issue 26), as the README and cli.py's docstring state it.

2: the user's input is wrong (config, data, checkpoint, a path given that does not exist or cannot
be written, a predict input that is not an image), one ``error:`` line and no traceback;
1: the run itself failed (tests/tools/test_bad_inputs.py: a diverged run).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segcvae import cli
from segcvae.cli import RUN_ERROR, USAGE_ERROR, main
from tests.api.conftest import write_tiny_checkpoint
from tests.tools.conftest import TINY


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from segcvae import viz

    path = tmp_path / "im.png"
    viz.save_png(path, np.zeros((32, 32, 3), np.uint8))
    return path


def _file(tmp: Path) -> Path:
    path = tmp / "a_file.txt"
    path.write_text("x")
    return path


def _folder(tmp: Path) -> Path:
    path = tmp / "a_folder"
    path.mkdir(exist_ok=True)
    return path


# (command line, a text the one error line must hold); {tmp}, {ckpt}, {image}, {file}, {folder}
# are filled in per test
BAD_PATHS: list[tuple[str, list[str], str]] = [
    ("train: --config missing", ["train", "--config", "{tmp}/none.yaml", *TINY], "none.yaml"),
    ("train: --out is a file", ["train", "--out", "{file}", *TINY], "is an existing file"),
    ("evaluate: --ckpt missing", ["evaluate", "--ckpt", "{tmp}/none.pt"], "not found"),
    ("evaluate: --ckpt is a folder", ["evaluate", "--ckpt", "{folder}"], "is a folder"),
    (
        "evaluate: --json is a folder",
        ["evaluate", "--ckpt", "{ckpt}", "--json", "{folder}"],
        "--json",
    ),
    (
        "predict: --input missing",
        ["predict", "--ckpt", "{ckpt}", "--input", "/nonexistent/x.png", "--out", "{tmp}/o"],
        "/nonexistent/x.png",
    ),
    (
        "predict: --input not an image",
        ["predict", "--ckpt", "{ckpt}", "--input", "{file}", "--out", "{tmp}/o"],
        "a_file.txt",
    ),
    (
        "predict: --ckpt missing",
        ["predict", "--ckpt", "{tmp}/none.pt", "--input", "{image}", "--out", "{tmp}/o"],
        "none.pt",
    ),
    (
        "predict: --out is a file",
        ["predict", "--ckpt", "{ckpt}", "--input", "{image}", "--out", "{file}"],
        "--out",
    ),
    ("export: --ckpt missing", ["export", "--ckpt", "{tmp}/none.pt", "--out", "{tmp}/m.onnx"], ""),
    ("export: --out is a folder", ["export", "--ckpt", "{ckpt}", "--out", "{folder}"], "a folder"),
    (
        "export: --out under a file",
        ["export", "--ckpt", "{ckpt}", "--out", "{file}/m.onnx"],
        "a_file.txt is a file, not a folder",
    ),
    ("demo: --ckpt missing", ["demo", "--ckpt", "{tmp}/none.pt"], ""),
    ("benchmark: --json is a folder", ["benchmark", "--json", "{folder}"], "--json"),
    ("benchmark: --json under a file", ["benchmark", "--json", "{file}/r.json"], "--json"),
]


@pytest.mark.parametrize(
    "argv, expected", [c[1:] for c in BAD_PATHS], ids=[c[0] for c in BAD_PATHS]
)
def test_a_bad_path_is_exit_2_with_one_line(
    argv: list[str],
    expected: str,
    tmp_path: Path,
    ckpt: Path,
    image: Path,
    capsys,
    monkeypatch,
) -> None:
    import segcvae.benchmark

    def not_to_run(*args, **kwargs):
        raise AssertionError("the long work started before the path was checked")

    monkeypatch.setattr(segcvae.benchmark, "main", not_to_run)
    monkeypatch.setattr("segcvae.export.export_onnx", not_to_run)
    monkeypatch.setattr("segcvae.engine.run.train", not_to_run)
    values = {
        "tmp": str(tmp_path),
        "ckpt": str(ckpt),
        "image": str(image),
        "file": str(_file(tmp_path)),
        "folder": str(_folder(tmp_path)),
    }
    before = sorted(p.name for p in Path(values["folder"]).iterdir())
    code = main([a.format(**values) for a in argv])
    err = capsys.readouterr().err
    assert code == USAGE_ERROR, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and expected in errors[-1], err
    assert sorted(p.name for p in Path(values["folder"]).iterdir()) == before  # nothing written


def test_export_into_a_folder_exports_nothing(ckpt: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    assert main(["export", "--ckpt", str(ckpt), "--out", str(folder)]) == USAGE_ERROR
    out, err = capsys.readouterr()
    assert err.strip() == f"error: --out {folder} is a folder; expected a file name"
    assert out == "" and list(folder.iterdir()) == []
    assert not list(tmp_path.glob("*.onnx"))
    # the sampler file beside it is checked too
    (tmp_path / "m_sampler.onnx").mkdir()
    assert main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "its sampler file" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_the_rule_is_written_where_users_read_it() -> None:
    doc = cli.__doc__ or ""
    assert "**2**: the user's input is wrong" in doc and "**1**: the run itself failed" in doc
    for command in cli.COMMANDS:
        assert command in doc, command
    page = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text()
    assert "## Exit codes" in page and "| 2 |" in page and "| 1 |" in page
    assert (USAGE_ERROR, RUN_ERROR) == (2, 1)


def test_the_benchmark_writes_its_json_when_the_path_is_fine(tmp_path: Path, monkeypatch) -> None:
    import segcvae.benchmark

    def fake(argv: list[str]) -> int:  # what the real one does at the end
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps({"ok": 1}))
        return 0

    monkeypatch.setattr(segcvae.benchmark, "main", fake)
    target = tmp_path / "deep" / "r.json"
    assert cli.benchmark_main(["--json", str(target)]) == 0
    assert json.loads(target.read_text()) == {"ok": 1}
    assert not list(target.parent.glob(".r.json.*"))  # the check's probe is gone
