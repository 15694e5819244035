"""mkdocs hook: every command's ``--help``, generated at build time from ``segcvae.cli``.

A page writes ``<!-- cli-reference -->`` where the options go: one section per command of
``segcvae.cli.COMMANDS``, each with the text its ``--help`` prints (argparse's own words, so the
page cannot drift from the parser).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any

# Document this checkout's package, not another installed copy.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MARKER = "<!-- cli-reference -->"


def help_text(command: str) -> str:
    """What ``segcvae COMMAND --help`` prints (100 columns wide)."""
    from segcvae.cli import main

    out = io.StringIO()
    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main([command, "--help"])
    finally:
        if width is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = width
    return out.getvalue().rstrip()


def reference() -> str:
    """A section per command with its ``--help``."""
    from segcvae.cli import COMMANDS

    parts = []
    for command in COMMANDS:
        parts += [f"### `segcvae {command}`", "", "```text", help_text(command), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs hook: replace the marker with the generated reference."""
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
