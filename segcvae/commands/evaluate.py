"""``segcvae evaluate``: a checkpoint -> the metrics table on stdout (+ JSON, + a sample grid)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from segcvae.commands.common import (
    RUN_ERROR,
    USAGE_ERROR,
    add_import_option,
    begin,
    check_writable_file,
    errors,
    fail,
    message,
    non_negative_int,
    positive_int,
    show_progress,
    split_overrides,
)

log = logging.getLogger("segcvae")

# how segcvae.evaluate's memory check names its argument -> this command's flag
FLAGS = {"hypotheses": "--hypotheses"}


def parser(prog: str = "segcvae evaluate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Evaluate a checkpoint on a dataset split.")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint (e.g. RUN_DIR/best.pt)")
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="default: test"
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="S >= 1 for the likelihood (default: eval.samples; eval.samples=0 skips it)",
    )
    p.add_argument(
        "--hypotheses",
        type=non_negative_int,
        default=None,
        help="hypotheses for GED / HM-IoU (default: eval.hypotheses; 0 = none)",
    )
    p.add_argument("--omission", action="store_true", help="seeded block omission on the images")
    p.add_argument(
        "--max-images", type=non_negative_int, default=0, help="evaluate only the first N images"
    )
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--grid", type=Path, default=None, help="write a sample grid PNG here")
    p.add_argument("--quiet", action="store_true")
    add_import_option(p)
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="e.g. data.root=/moved/lfw"
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "segcvae evaluate") -> int:
    """``tools/evaluate.py``: checkpoint -> table on stdout (+ JSON)."""
    args, overrides = split_overrides(parser(prog), argv)
    if (code := begin(args, args.quiet)) is not None:
        return code
    from segcvae.engine.distributed import resolve_device
    from segcvae.engine.hook_validation import warn_unscored_classes
    from segcvae.engine.memory import MemoryLimitError
    from segcvae.evaluation import evaluate

    try:
        for path, flag in ((args.json, "--json"), (args.grid, "--grid")):
            if path is not None:
                check_writable_file(path, flag)
        device = resolve_device(args.device, key="--device") if args.device else None
        report = evaluate(
            args.ckpt,
            split=args.split,
            samples=args.samples,
            hypotheses=args.hypotheses,
            omission=args.omission,
            max_images=args.max_images,  # the whole split unless asked (eval.max_images: val)
            batch_size=args.batch_size,
            device=device,
            overrides=overrides,
            keep_vis=args.grid is not None,
            progress=show_progress(args),
        )
    except MemoryLimitError as e:
        return fail(str(e.named(FLAGS)), USAGE_ERROR)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
    # Write the files first: the table on stdout is the sign of success.
    written = []
    try:
        if args.json:
            written.append(report.save_json(args.json))
        if args.grid and report.vis is not None:
            written.append(report.save_grid(args.grid))
    except OSError as e:
        print(report.table(), file=sys.stderr)
        return fail(
            f"evaluated, but could not write {e.filename or ''}: {e.strerror or e}", RUN_ERROR
        )
    print(report.title)
    print(report.table())
    warn_unscored_classes(report.metrics, report.class_names, args.split)
    for path in written:
        log.info("wrote %s", path)
    return 0
