"""Every code block of the README and the docs runs, so a snippet that breaks fails CI.

Each block runs in a fresh folder that holds what the docs assume a reader has: the default job's
run folder (``runs/default/best.pt``, a tiny checkpoint trained once by a fixture with the
overrides of :data:`tests.docs.snippets.RUN_OVERRIDES`), an image ``face.jpg``, a folder
``my_images/``, own-data folders for ``/data/my_set`` and ``/data/my_raters``, and links to
``configs/``, ``tools/`` and ``datasets/``. How each language is run: :mod:`tests.docs.snippets`.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from segcvae.config import Config
from tests.conftest import SHARED_DATA
from tests.docs.snippets import (
    REPO,
    RUN,
    RUN_OVERRIDES,
    Block,
    all_blocks,
    command_lines,
    missing_data,
    translate,
)

LFW_FACE = SHARED_DATA / "lfw" / "lfw_funneled" / "Sandy_Smith"


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _param(block: Block) -> object:
    marks = []
    kind, arg = block.marker or ("", "")
    if kind == "skip":
        marks.append(pytest.mark.skip(reason=f"{block.id}: {arg}"))
    if kind == "requires" and not _exists(arg):
        marks.append(pytest.mark.skip(reason=f"{block.id}: needs {arg}, which does not exist yet"))
    # shell blocks run whole commands (training runs, evaluations): the slow tier, like the other
    # end-to-end tests; the Python and YAML blocks stay in the unit tier
    if kind == "slow" or block.real_data or block.lang not in ("python", "yaml"):
        marks.append(pytest.mark.slow)
    return pytest.param(block, id=block.id, marks=marks)


BLOCKS = [b for b in all_blocks() if b.lang in RUN]


def test_every_block_is_code_or_text() -> None:
    """A block without a language must not hold a command (tag it bash, or text)."""
    for block in all_blocks():
        if not block.lang:
            first = block.code.lstrip().split("\n", 1)[0]
            assert not re.match(r"(python|segcvae|pip|tools/)\b", first), (
                f"{block.id}: a command in a block without a language; tag it bash (or text)"
            )
    assert len(BLOCKS) >= 20, "the docs lost their code blocks?"


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The default job's run folder, trained with the tiny overrides (two steps)."""
    from segcvae.cli import main

    root = tmp_path_factory.mktemp("default_job")
    run = root / "runs" / "default"
    assert main(["train", "--out", str(run), "--quiet", *RUN_OVERRIDES]) == 0
    return run


class Exports:
    """ONNX exports of the tiny checkpoint, each command run once per session (an export takes
    half a minute): a block that repeats a command gets the files that command wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple[str, ...], Path] = {}

    def run(self, argv: list[str], workspace: Path) -> None:
        from segcvae.cli import main

        out = Path(argv[argv.index("--out") + 1])
        key = tuple(argv)
        if key not in self.done:
            assert main([*argv, "--quiet"]) == 0, f"`segcvae {' '.join(argv)}` failed"
            keep = self.root / str(len(self.done))
            keep.mkdir()
            for path in (out, out.with_name(f"{out.stem}_sampler{out.suffix}")):
                shutil.copy(path, keep / path.name)
            self.done[key] = keep
        for path in self.done[key].iterdir():
            if not (workspace / out.parent / path.name).exists():
                shutil.copy(path, workspace / out.parent / path.name)


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Exports:
    pytest.importorskip("onnxruntime")
    return Exports(tmp_path_factory.mktemp("exports"))


def _image(seed: int, size: tuple[int, int] = (80, 96)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _own_data(root: Path, raters: int) -> None:
    """A small folder data set: pairs with 3-class index masks, or per-rater 0/255 masks."""
    (root / "images").mkdir(parents=True)
    for i in range(12):
        cv2.imwrite(str(root / "images" / f"im{i:02d}.png"), _image(i))
        labels = np.zeros((80, 96), np.uint8)
        labels[10 + i : 50, 20:70] = 1
        labels[55:75, 5 + i : 40] = 2
        if raters == 0:
            (root / "masks").mkdir(exist_ok=True)
            cv2.imwrite(str(root / "masks" / f"im{i:02d}.png"), labels)
        for r in range(raters):
            (root / "masks" / f"rater{r}").mkdir(parents=True, exist_ok=True)
            mask = np.where(np.roll(labels, r * 3, axis=0) > 0, 255, 0).astype(np.uint8)
            cv2.imwrite(str(root / "masks" / f"rater{r}" / f"im{i:02d}.png"), mask)


@pytest.fixture
def workspace(tmp_path: Path, trained_run: Path, monkeypatch) -> Path:
    """A folder as the docs assume a reader's to be (see the module docstring)."""
    for name in ("configs", "tools", "datasets"):
        (tmp_path / name).symlink_to(REPO / name)
    run = tmp_path / "runs" / "default"
    run.mkdir(parents=True)
    shutil.copy(trained_run / "best.pt", run / "best.pt")
    face = next(iter(sorted(LFW_FACE.glob("*.jpg"))), None) if LFW_FACE.is_dir() else None
    if face is not None:
        shutil.copy(face, tmp_path / "face.jpg")
    else:
        cv2.imwrite(str(tmp_path / "face.jpg"), _image(0, (250, 250)))
    (tmp_path / "my_images").mkdir()
    shutil.copy(tmp_path / "face.jpg", tmp_path / "my_images" / "face.jpg")
    cv2.imwrite(str(tmp_path / "my_images" / "noise.png"), _image(1))
    _own_data(tmp_path / "my_set", raters=0)
    _own_data(tmp_path / "my_raters", raters=2)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------- runners
def run_python(block: Block) -> None:
    """Execute the block as a module of its own; families it registers are removed after."""
    from segcvae.registry import family_names, unregister_family

    before = set(family_names())
    module = types.ModuleType("docs_snippet")
    sys.modules[module.__name__] = module
    try:
        exec(compile(block.code, block.id, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
        for name in set(family_names()) - before:
            unregister_family(name)


def run_shell(block: Block, exports: Callable[[], Exports]) -> None:
    """Run each command of the block in-process; every one must exit 0."""
    from segcvae.cli import main
    from segcvae.toy.cli import main as toy_main

    commands = [translate(words) for words in command_lines(block.code)]
    ran = 0
    for command in commands:
        if command.kind == "skip":
            print(f"not run: {command.text}: {command.reason}")
            continue
        missing = missing_data(command.argv)
        if missing is not None:
            pytest.skip(f"{block.id}: needs data at {missing}")
        print(f"running: {command.text}\n     as: {command.kind} {' '.join(command.argv)}")
        if command.kind == "toy":
            toy_main(command.argv)
        elif command.argv[0] == "export":
            exports().run(command.argv, Path.cwd())
        else:
            try:
                code = main(command.argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code
            assert code == 0, f"{block.id}: `{command.text}` exited {code}"
        ran += 1
    if not ran:
        reasons = dict.fromkeys(c.reason for c in commands)  # each once, in order
        pytest.skip(f"{block.id}: not run: {'; '.join(reasons)}")


def check_yaml(block: Block) -> None:
    """A config (or a part of one); a block headed ``# configs/NAME.yaml`` must equal that file."""
    raw = yaml.safe_load(block.code)
    named = re.match(r"#\s*(configs/[\w/]+\.yaml)", block.code.lstrip())
    if named:
        assert raw == yaml.safe_load((REPO / named[1]).read_text()), (
            f"{block.id} differs from {named[1]}"
        )
    else:
        Config.from_dict(raw, block.id)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_block_runs(block: Block, workspace: Path, request) -> None:
    def exports() -> Exports:
        return request.getfixturevalue("exports")

    if re.search(r"\bmodel(_sampler)?\.onnx\b", block.code) and "segcvae export" not in block.code:
        # what `segcvae export --ckpt runs/default/best.pt --out model.onnx` (the docs) writes
        exports().run(
            ["export", "--ckpt", "runs/default/best.pt", "--out", "model.onnx"], workspace
        )
    if block.lang == "python":
        run_python(block)
    elif block.lang == "yaml":
        check_yaml(block)
    else:
        run_shell(block, exports)


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS if b.lang == "python"])
def test_python_block_is_formatted(block: Block) -> None:
    """A block that `ruff format` would change gets mangled by the next formatter run (a tuple
    split over five lines by a long comment): write it as the formatter leaves it."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [ruff, "format", "--line-length", "100", "--stdin-filename", "snippet.py", "-"],
        input=block.code,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == block.code, f"{block.id}: ruff format would write\n{done.stdout}"
