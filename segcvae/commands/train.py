"""``segcvae train``: a config (+ overrides) -> a run folder with checkpoints, logs and pictures."""

from __future__ import annotations

import argparse
import logging
import os
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
    message,
    show_progress,
    split_overrides,
)

log = logging.getLogger("segcvae")


def parser(prog: str = "segcvae train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a model. Without --config, trains the embedded default "
        "(configs/shapes_cvae.yaml = the defaults in segcvae/config.py).",
        epilog="Overrides: section.key=value (or --section.key=value), e.g. train.steps=200 "
        "data.root=/path/to/lfw. Multi-GPU: torchrun --nproc_per_node=N tools/train.py ...",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="experiment YAML (default: embedded default)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/<config name>)"
    )
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt if present")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (its checkpoints, logs and pictures)",
    )
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    add_import_option(p)
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "segcvae train") -> int:
    """``tools/train.py``: config (+ overrides) -> run folder with checkpoints, logs, pictures."""
    args, overrides = split_overrides(parser(prog), argv)
    if (code := begin(args, args.quiet)) is not None:
        return code
    from segcvae.config import Config, ConfigError, apply_overrides

    out = args.out or Path("runs") / (args.config.stem if args.config else "default")
    last = out / "last.pt"
    if args.resume and args.overwrite:
        return fail("--resume and --overwrite contradict each other; give one", USAGE_ERROR)
    resuming = args.resume and last.is_file()
    if not resuming:  # check the config before the (slow) import of the engine
        try:
            cfg = Config.from_yaml(args.config, overrides)
            check_output_folder(out, "--out")
        except (ConfigError, FileExistsError) as e:
            return fail(str(e), USAGE_ERROR)
    from segcvae.engine.checkpoint import load_checkpoint
    from segcvae.engine.run import train
    from segcvae.engine.trainer import DivergenceError, check_run_dir

    try:
        check_run_dir(out, resume=args.resume, overwrite=args.overwrite)
        if resuming:
            # The run's own config, so that a resumed run is the run that was started.
            if args.config is not None:
                log.warning(
                    "--resume: using the config stored in %s; --config %s is ignored",
                    last,
                    args.config,
                )
            stored = load_checkpoint(last)["config"]
            cfg = Config.from_dict(apply_overrides(stored, overrides), f"{last} config")
        summary = train(
            cfg, out, resume=args.resume, progress=show_progress(args), overwrite=args.overwrite
        )
    except DivergenceError as e:
        return fail(str(e), RUN_ERROR)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        print_summary(out, summary)
    return 0


def print_summary(out: Path, summary: dict) -> None:
    """Where the run is, its last validation numbers, what to look at and what to run next."""
    val = summary.get("val") or {}
    shown = ", ".join(
        f"{k} {val[k]:.4f}"
        for k in ("mean_iou", "pixel_accuracy", "nll", "ged")
        if isinstance(val.get(k), float)
    )
    print(f"run folder: {out}  (step {summary['step']}; {shown})")
    looks = [p for p in (out / "curves.png", out / "samples", out / "metrics.jsonl") if p.exists()]
    if looks:
        print(f"look at: {', '.join(str(p) for p in looks)}")
    ckpt = next((p for p in (out / "best.pt", out / "last.pt") if p.is_file()), None)
    if ckpt is not None:
        print(
            f"next: segcvae evaluate --ckpt {ckpt}   segcvae predict --ckpt {ckpt} --input IMG "
            "--out DIR"
        )
