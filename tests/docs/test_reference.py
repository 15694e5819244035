"""The generated pages of the docs site: the configuration reference and the commands' options."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal

import pytest

from segcvae import registry
from segcvae.config import Config
from tests.docs.snippets import REPO


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


config_reference = _hook("config_reference")
cli_reference = _hook("cli_reference")


@dataclass
class Example:
    """An example section."""

    plain: int = 3  # its own comment
    # a comment block above a key
    # on two lines
    above: str = ""
    # --- a group (with a note)
    grouped: bool = True  # inline wins over the block above
    # shapes
    shapes_size: int = 2000
    helped: float = field(default=0.5, metadata={"help": "from the metadata", "bounds": {"ge": 0}})
    choice: Literal["a", "b"] = "a"
    many: list[int] | None = None
    bare: int = 0


def test_field_docs_read_comments_help_and_groups() -> None:
    rows = {r.key: r for r in config_reference.rows(Example, "ex")}
    assert rows["ex.plain"].help == "its own comment" and rows["ex.plain"].default == "3"
    assert rows["ex.above"].help == "a comment block above a key on two lines"
    assert rows["ex.above"].default == '""'
    assert rows["ex.grouped"].help == "inline wins over the block above"
    assert rows["a group"].group and rows["a group"].help == "(with a note)"
    assert rows["shapes"].group and rows["ex.shapes_size"].help == ""
    assert rows["ex.helped"].help == "from the metadata (≥ 0)"
    assert rows["ex.choice"].type == "one of a, b" and rows["ex.choice"].default == "a"
    assert rows["ex.many"].type == "list[int] or null" and rows["ex.many"].default == "null"
    assert rows["ex.bare"].help == ""
    table = config_reference.table(Example, "ex")
    assert "| `ex.choice` | one of a, b | `a` |" in table


def test_every_config_key_is_in_the_reference() -> None:
    text = config_reference.reference()
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(section.default_factory()):
            assert f"| `{section.name}.{f.name}` |" in text, f"{section.name}.{f.name} missing"
    assert "| `train.steps` | int | `850` | optimiser steps of the run |" in text


def test_family_settings_are_listed_where_the_registry_has_them(monkeypatch) -> None:
    @dataclass
    class SSNSettings:
        """Settings of the SSN family."""

        rank: int = field(default=10, metadata={"help": "rank of the factor", "bounds": {"ge": 1}})

    monkeypatch.setattr(
        registry,
        "family_settings",
        lambda name: SSNSettings if name == "ssn" else None,
        raising=False,
    )
    text = config_reference.reference()
    assert "### `model.arch: ssn`" in text
    assert "| `model.ssn.rank` | int | `10` | rank of the factor (≥ 1) |" in text
    monkeypatch.delattr(registry, "family_settings")
    assert "model.arch: ssn" not in config_reference.reference()  # skipped until it exists


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "crossval"])
def test_cli_reference_holds_each_commands_help(command: str) -> None:
    text = cli_reference.help_text(command)
    assert text.startswith(f"usage: segcvae {command}") and "--help" in text
    assert re.search(rf"^### `segcvae {command}`$", cli_reference.reference(), re.MULTILINE)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_resolve() -> None:
    """The README is read on GitHub, outside the docs build: its relative links and anchors exist."""
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = REPO / path if path else REPO / "README.md"
        assert target.exists(), f"README links to {link}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"README links to {link}: no heading"
