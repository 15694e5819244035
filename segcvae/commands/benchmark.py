"""``segcvae benchmark``: :func:`segcvae.benchmark.main`, with ``--json`` checked before the
(minutes long) measurement, ``--import`` done first, and the user's mistakes as one line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segcvae.commands.common import (
    USAGE_ERROR,
    add_import_option,
    begin,
    check_writable_file,
    errors,
    fail,
    message,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Forward to :func:`segcvae.benchmark.main` (which parses the other options)."""
    from segcvae.benchmark import main as benchmark

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    add_import_option(pre)
    known, rest = pre.parse_known_args(argv)  # rest: the benchmark's own options
    if (code := begin(known)) is not None:
        return code
    json = argparse.ArgumentParser(add_help=False)
    json.add_argument("--json", type=Path, default=None)
    target = json.parse_known_args(rest)[0].json
    try:
        if target is not None:
            check_writable_file(target, "--json")
        return int(benchmark(rest) or 0)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
