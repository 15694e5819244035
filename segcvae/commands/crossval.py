"""``segcvae crossval``: k-fold cross-validation, a model per fold, the per-case metrics pooled."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from segcvae.commands.common import (
    RUN_ERROR,
    USAGE_ERROR,
    add_import_option,
    begin,
    check_output_folder,
    errors,
    fail,
    int_or_error,
    message,
    non_negative_int,
    positive_int,
    show_progress,
    split_overrides,
)


def parser(prog: str = "segcvae crossval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="k-fold cross-validation over the dataset's items: train and evaluate one "
        "model per fold (DIR/fold<k>/, validation carved from the fold's training items), pool "
        "the per-case metrics over all folds and print them with the mean and std across folds "
        "(DIR/crossval.json). A killed run continues where it stopped when the command is run "
        "again.",
        epilog="Overrides: section.key=value, for every fold (e.g. data.root=/path/to/qubiq).",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="experiment YAML (default: the defaults)"
    )
    p.add_argument("--folds", type=positive_int, default=5, help="k (default 5)")
    p.add_argument("--out", type=Path, required=True, help="cross-validation folder")
    p.add_argument(
        "--folds-seed", type=non_negative_int, default=0, help="seed of the deal into folds"
    )
    p.add_argument(
        "--samples", type=positive_int, default=None, help="S of the test likelihood (eval.samples)"
    )
    p.add_argument(
        "--hypotheses",
        type=non_negative_int,
        default=None,
        help="hypotheses per test image (default: eval.hypotheses)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="K",
        help="train and evaluate only these folds (crossval.json pools the folds done so far); "
        "section.key=value items after it are overrides",
    )
    p.add_argument(
        "--retest",
        action="store_true",
        help="train nothing: test every finished fold's best.pt again with this command's eval.* "
        "overrides (e.g. eval.hypothesis_masks=level_set); every other setting must match",
    )
    p.add_argument("--no-progress", action="store_true", help="log lines instead of progress bars")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    add_import_option(p)
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "segcvae crossval") -> int:
    """``tools/crossval.py``: config + k -> DIR/fold<k>/ runs and DIR/crossval.json."""
    p = parser(prog)
    args, overrides = split_overrides(p, argv)
    only = None
    if args.only is not None:  # "--only 0 data.root=..." : the nargs list ends at the first K=V
        only = [int_or_error(p, "--only", v) for v in args.only if "=" not in v]
        overrides += [v for v in args.only if "=" in v]
        if not only:
            p.error("argument --only: expected at least one fold index")
    if (code := begin(args, args.quiet)) is not None:
        return code
    from segcvae.crossval import crossval, format_summary
    from segcvae.engine.memory import MemoryLimitError
    from segcvae.engine.trainer import DivergenceError

    try:
        check_output_folder(args.out, "--out")
        summary = crossval(
            args.config,
            args.out,
            folds=args.folds,
            overrides=overrides,
            folds_seed=args.folds_seed,
            samples=args.samples,
            hypotheses=args.hypotheses,
            progress=show_progress(args),
            only=only,
            retest=args.retest,
        )
    except DivergenceError as e:
        return fail(str(e), RUN_ERROR)
    except MemoryLimitError as e:
        return fail(str(e.named({"hypotheses": "--hypotheses"})), USAGE_ERROR)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
    print(format_summary(summary))
    print(f"wrote {args.out / 'crossval.json'}")
    return 0
