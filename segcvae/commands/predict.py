"""``segcvae predict``: a checkpoint + image files -> masks, overlays, samples, uncertainty maps."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from segcvae.commands.common import (
    USAGE_ERROR,
    add_import_option,
    begin,
    check_output_folder,
    errors,
    fail,
    message,
    positive_int,
)


def parser(prog: str = "segcvae predict") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Segment image files. Writes <stem>_mask.png (class indices with a palette, at "
        "the input's size), <stem>_overlay.png, <stem>_samples.png (hypotheses), "
        "<stem>_uncertainty.png (entropy) and <stem>_foreground.png (8-bit grayscale: the fraction "
        "of hypotheses that are not background, x255). A NIfTI input (.nii, .nii.gz; a 3D volume "
        "slice by slice along data.folder.nifti_axis) also gets <stem>_mask.nii.gz, "
        "<stem>_foreground.nii.gz and <stem>_uncertainty.nii.gz on its voxel grid.",
    )
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument(
        "--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=8,
        help="hypotheses in the samples grid (default 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the hypotheses (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    p.add_argument("--quiet", action="store_true")
    add_import_option(p)
    return p


def main(argv: Sequence[str] | None = None, prog: str = "segcvae predict") -> int:
    """``tools/predict.py``: :meth:`segcvae.api.Predictor.predict_files` on the inputs."""
    args = parser(prog).parse_args(argv)
    if (code := begin(args, args.quiet)) is not None:
        return code
    if args.batch_size < 1:
        return fail("--batch-size must be >= 1", USAGE_ERROR)
    from segcvae.api import Predictor
    from segcvae.engine.checkpoint import load_checkpoint
    from segcvae.engine.memory import MemoryLimitError
    from segcvae.engine.predict import expand_inputs

    try:
        check_output_folder(args.out, "--out")
        ckpt = load_checkpoint(args.ckpt)
        device = args.device or str(ckpt["config"].get("train", {}).get("device", "auto"))
        predictor = Predictor.from_checkpoint(ckpt, device=device, batch_size=args.batch_size)
    except errors() as e:
        return fail(message(e), USAGE_ERROR)
    paths = expand_inputs(args.input)
    if not paths:
        return fail(f"no input images found in {args.input}", USAGE_ERROR)
    if not any(p.exists() for p in paths):  # nothing to do: one line, no --out folder made
        return fail(f"--input: not found: {', '.join(map(str, paths))}", USAGE_ERROR)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"--out {args.out}: cannot create the folder ({e.strerror or e})", USAGE_ERROR)
    try:
        done = predictor.predict_files(
            paths,
            args.out,
            samples=args.samples,
            seed=args.seed,
            on_error=lambda path, reason: print(f"error: {reason}", file=sys.stderr),
        )
    except MemoryLimitError as e:
        return fail(str(e.named({"samples": "--samples"})), USAGE_ERROR)
    failed = [str(p) for p in done.failed]
    print(f"{len(paths) - len(failed)} of {len(paths)} images segmented into {args.out}")
    if failed:
        print(f"error: {len(failed)} unreadable input(s): {', '.join(failed)}", file=sys.stderr)
        return USAGE_ERROR  # the inputs are the user's: the same code as a missing --ckpt
    return 0
