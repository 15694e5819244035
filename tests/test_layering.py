"""Layering: the losses and the metrics know the models' outputs and interface, not their classes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segcvae"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["losses", "metrics"])
def test_no_import_from_models(package: str) -> None:
    files = sorted((PACKAGE / package).glob("*.py"))
    assert files
    for path in files:
        bad = {m for m in imported_modules(path) if m.startswith("segcvae.models")}
        assert not bad, f"{path.name} imports {sorted(bad)}"


# The floors of the package, lowest first: a module imports only from its own floor or below.
LAYERS = [
    [
        "segcvae.settings",
        "segcvae.registry",
        "segcvae.data.registry",  # import-light: the config finds a dataset's settings by it
        "segcvae.config",
        "segcvae.labels",
        "segcvae.outputs",
    ],
    ["segcvae.data", "segcvae.metrics", "segcvae.losses", "segcvae.viz", "segcvae.inference"],
    ["segcvae.models"],
    ["segcvae.engine"],
    [
        "segcvae.api",
        "segcvae.evaluation",
        "segcvae.export",
        "segcvae.demo",
        "segcvae.benchmark",
        "segcvae.benchmark_timing",
        "segcvae.crossval",
    ],
    ["segcvae.cli", "segcvae.commands"],
    ["segcvae.toy"],
]


def floor(module: str) -> int | None:
    for i, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return i
    return None


def test_every_module_has_a_floor_and_imports_nothing_above_it() -> None:
    """No import runs up the layers (function-level imports included); ``segcvae/__init__.py``
    (the lazy ``segcvae.load``) stands above them all."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "segcvae":
            continue
        mine = floor(module)
        assert mine is not None, f"{module} is on no floor: add it to LAYERS"
        for name in imported_modules(path):
            theirs = floor(name) if name.startswith("segcvae") else None
            if theirs is not None and theirs > mine:
                problems.append(f"{module} imports {name}")
    assert not problems


def test_the_floor_check_can_fail(tmp_path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from segcvae.api import Predictor\n")
    assert floor("segcvae.engine.predict") < max(floor(m) for m in imported_modules(bad))
