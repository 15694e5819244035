"""``segcvae export``: a checkpoint -> two ONNX files, checked against PyTorch with onnxruntime."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segcvae.commands.common import (
    RUN_ERROR,
    USAGE_ERROR,
    add_import_option,
    begin,
    check_writable_file,
    errors,
    fail,
    message,
)

ONNX_TOLERANCE = 1e-4  # max |logit difference| accepted between onnxruntime and PyTorch (CPU)


def parser(prog: str = "segcvae export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Export a checkpoint to ONNX: OUT (image -> logits, the deterministic "
        "prediction) and OUT_sampler.onnx (image + noise -> S hypotheses), then run both with "
        "onnxruntime against PyTorch on real images and print the largest logit difference.",
    )
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="e.g. model.onnx")
    p.add_argument(
        "--samples",
        type=int,
        default=4,
        help="S of the example noise and of the check (S stays a dynamic axis; default 4)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        default=None,
        metavar="PATH",
        help="images for the check (files, folders, globs; default: 4 embedded shapes images)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--quiet", action="store_true")
    add_import_option(p)
    return p


def shapes_examples(n: int, size: int = 96) -> list[Any]:
    """n test images of the embedded shapes data, (size, size, 3) uint8."""
    from segcvae.data.shapes import ShapesDataset

    data = ShapesDataset("test", n, image_size=size)
    return [data.render(i).image for i in range(n)]


def main(argv: Sequence[str] | None = None, prog: str = "segcvae export") -> int:
    """``tools/export.py``: checkpoint -> two ONNX files, checked against PyTorch."""
    args = parser(prog).parse_args(argv)
    if (code := begin(args, args.quiet)) is not None:
        return code
    if args.samples < 2:
        return fail("--samples must be >= 2 (S stays dynamic in the exported sampler)", USAGE_ERROR)
    from segcvae.api import load_image
    from segcvae.data import DataError
    from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from segcvae.engine.predict import expand_inputs
    from segcvae.export import MULTIPLE, ExportError, check_onnx, export_onnx, noise_formula

    try:
        # both files, before the (long) export: the sampler is named as export_onnx names it
        sampler = args.out.with_name(f"{args.out.stem}_sampler{args.out.suffix or '.onnx'}")
        check_writable_file(args.out, "--out")
        check_writable_file(sampler, f"--out {args.out}: its sampler file")
        ckpt = load_checkpoint(args.ckpt)
        model, cfg = model_from_checkpoint(ckpt, "cpu")
        images = (
            [load_image(p) for p in expand_inputs(args.images)]
            if args.images
            else shapes_examples(4)
        )
    except (DataError, OSError, *errors()) as e:
        return fail(message(e), USAGE_ERROR)
    if not images:
        return fail(f"no images found in {args.images}", USAGE_ERROR)
    try:
        paths = export_onnx(model, cfg, ckpt["meta"], args.out, samples=args.samples)
    except ExportError as e:
        return fail(str(e), USAGE_ERROR)
    shape = ",".join(["S", "B", *(noise_formula(model) or ["1"])])
    print(f"wrote {paths[0]} (image -> logits) and {paths[1]} (image, noise {shape} -> samples)")
    if args.no_check:
        return 0
    side = max(MULTIPLE, -(-int(cfg.data.image_size) // MULTIPLE) * MULTIPLE)
    sizes = [(side, side), (side + MULTIPLE, side + 2 * MULTIPLE)]  # the model's size and another
    try:
        diff = check_onnx(model, cfg, paths, images, sizes, samples=args.samples)
    except ExportError as e:
        return fail(str(e), USAGE_ERROR)
    where = " and ".join(f"{h}x{w}" for h, w in sizes)
    print(
        f"onnxruntime vs PyTorch (CPU), {len(images)} images at {where}, S={args.samples}: "
        f"max |logit diff| deterministic {diff['logits']:.2e}, sampler {diff['samples']:.2e} "
        f"(limit {ONNX_TOLERANCE:.0e})"
    )
    if max(diff["logits"], diff["samples"]) > ONNX_TOLERANCE:
        return fail(f"the ONNX graphs differ from PyTorch by more than {ONNX_TOLERANCE}", RUN_ERROR)
    return 0
