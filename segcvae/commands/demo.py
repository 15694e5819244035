"""``segcvae demo``: a local web page for a checkpoint (upload an image, see the hypotheses)."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from segcvae.commands.common import (
    USAGE_ERROR,
    add_import_option,
    begin,
    errors,
    fail,
    message,
)


def parser(prog: str = "segcvae demo") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local web page for a checkpoint: upload an image (or pick an embedded "
        "shapes example), choose S, see the mask overlay, the hypotheses and the uncertainty.",
    )
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N (default cpu)")
    add_import_option(p)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "segcvae demo") -> int:
    """``segcvae demo``: serve the page until interrupted."""
    args = parser(prog).parse_args(argv)
    if (code := begin(args)) is not None:
        return code
    from segcvae.demo import offline_environment

    offline_environment()
    if importlib.util.find_spec("gradio") is None:
        return fail("the demo needs gradio: pip install -e '.[demo]'", USAGE_ERROR)
    from segcvae.api import Predictor
    from segcvae.demo import launch

    try:
        predictor = Predictor.from_checkpoint(args.ckpt, device=args.device)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
    print(f"segcvae demo of {args.ckpt} on http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        launch(predictor, host=args.host, port=args.port)
    except OSError as e:  # gradio: "Cannot find empty port ..." (in use, or not ours to bind)
        reason = message(e).split(". ")[0]
        return fail(
            f"--host {args.host} --port {args.port}: cannot serve there ({reason}); choose "
            "another --port",
            USAGE_ERROR,
        )
    return 0
