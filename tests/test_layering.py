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
