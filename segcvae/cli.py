"""Command-line entry points: ``segcvae train|evaluate|predict|export|demo|crossval|benchmark``.

``tools/train.py``, ``tools/evaluate.py``, ``tools/predict.py``, ``tools/crossval.py`` ... call the
same functions (:func:`train_main`, :func:`evaluate_main`, :func:`predict_main`,
:func:`crossval_main`). Each parses its arguments,
builds what it needs from a config or a checkpoint, and calls the engine.

Exit codes, one rule for every command (train, evaluate, predict, export, demo, crossval,
benchmark, and any command added later):

* **0**: success.
* **2**: the user's input is wrong, reported as one line ``error: ...`` naming the key, file or
  path and what was expected: a bad configuration (``ConfigError``), bad data (``DataError``:
  also a predict input that does not exist or is not an image, and float pixels outside
  [0, 1]), a bad checkpoint (``CheckpointError``: missing, not a checkpoint, weights that do not
  fit the config), any path given that does not exist or cannot be written (an output that is
  an existing folder where a file is expected or the reverse, a parent that cannot be made, a
  run folder that cannot be created: ``RunDirError``), a demo port that cannot be bound, and
  argparse's usage errors. Checks come before the long work: nothing is trained, evaluated or
  exported after such an error; predict still segments its readable inputs, then exits 2.
* **1**: the run itself failed: a diverged training run, ONNX graphs that differ from PyTorch,
  results that could not be written although the path was checked (a disk filling up); and any
  other exception, which is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("segcvae")

USAGE_ERROR = 2
RUN_ERROR = 1


class _TqdmHandler(logging.StreamHandler):
    """Log through ``tqdm.write`` so messages do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(quiet: bool = False) -> None:
    """INFO on rank 0 (WARNING with ``quiet`` or on other ranks), to stderr."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("segcvae")
    logger.handlers.clear()
    handler = _TqdmHandler()
    handler.setFormatter(
        logging.Formatter("%(message)s" if rank == 0 else f"[rank {rank}] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet or rank != 0 else logging.INFO)
    logger.propagate = False


def _split_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[Any, list[str]]:
    """Parse known options; ``section.key=value`` and ``--section.key=value`` become overrides."""
    args, rest = parser.parse_known_args(argv)
    overrides = list(getattr(args, "overrides", []) or [])
    for item in rest:
        body = item[2:] if item.startswith("--") else item
        if "=" in body and "." in body.split("=", 1)[0]:
            overrides.append(body)
        else:
            parser.error(f"unrecognized argument: {item}")
    return args, overrides


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _errors() -> tuple[type[BaseException], ...]:
    """A user's mistakes: reported as a one-line message with exit code 2 rather than a traceback.

    Anything else (a ValueError from deep inside torch, a KeyError in our code) is a bug and keeps
    its traceback (exit code 1).
    """
    from segcvae.config import ConfigError
    from segcvae.data import DataError
    from segcvae.engine.checkpoint import CheckpointError
    from segcvae.engine.run_dir import RunDirError

    return (ConfigError, DataError, CheckpointError, RunDirError) + _PATH_ERRORS


# Paths given on the command line or in the config that do not exist or cannot be written.
_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _int_or_error(parser: argparse.ArgumentParser, flag: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        parser.error(f"argument {flag}: expected an integer, got {text!r}")


def _check_output_folder(path: Path, flag: str) -> None:
    """Raise FileExistsError if ``path`` is an existing file (an output folder was asked for)."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{flag} {path} is an existing file; expected a folder (new or existing)"
        )


def _check_writable_file(path: Path, flag: str) -> None:
    """Fail now, not after a long evaluation, if ``path`` cannot be written.

    Creates the parent folder and a temporary file in it (removed again).
    """
    import tempfile

    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; expected a file name")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(f"{flag} {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=True):
            pass
    except OSError as e:
        raise PermissionError(
            f"{flag} {path}: cannot write in {path.parent} ({e.strerror or e}); choose a writable "
            "location"
        ) from None


# ---------------------------------------------------------------------------------------- train
def train_parser(prog: str = "segcvae train") -> argparse.ArgumentParser:
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
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    return p


def train_main(argv: Sequence[str] | None = None, prog: str = "segcvae train") -> int:
    """``tools/train.py``: config (+ overrides) -> run folder with checkpoints, logs, pictures."""
    parser = train_parser(prog)
    args, overrides = _split_overrides(parser, argv)
    setup_logging(args.quiet)
    from segcvae.config import Config, ConfigError, apply_overrides

    out = args.out or Path("runs") / (args.config.stem if args.config else "default")
    last = out / "last.pt"
    if args.resume and args.overwrite:
        return _fail("--resume and --overwrite contradict each other; give one", USAGE_ERROR)
    resuming = args.resume and last.is_file()
    if not resuming:  # check the config before the (slow) import of the engine
        try:
            cfg = Config.from_yaml(args.config, overrides)
            _check_output_folder(out, "--out")
        except (ConfigError, FileExistsError) as e:
            return _fail(str(e), USAGE_ERROR)
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
        progress = not args.no_progress and not args.quiet and sys.stderr.isatty()
        summary = train(cfg, out, resume=args.resume, progress=progress, overwrite=args.overwrite)
    except DivergenceError as e:
        return _fail(str(e), RUN_ERROR)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        val = summary.get("val") or {}
        shown = ", ".join(
            f"{k} {val[k]:.4f}"
            for k in ("mean_iou", "pixel_accuracy", "nll", "ged")
            if isinstance(val.get(k), float)
        )
        print(f"run folder: {out}  (step {summary['step']}; {shown})")
        looks = [
            p for p in (out / "curves.png", out / "samples", out / "metrics.jsonl") if p.exists()
        ]
        if looks:
            print(f"look at: {', '.join(str(p) for p in looks)}")
        ckpt = next((p for p in (out / "best.pt", out / "last.pt") if p.is_file()), None)
        if ckpt is not None:
            print(
                f"next: segcvae evaluate --ckpt {ckpt}   segcvae predict --ckpt {ckpt} --input IMG "
                "--out DIR"
            )
    return 0


# ------------------------------------------------------------------------------------- evaluate
def evaluate_parser(prog: str = "segcvae evaluate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Evaluate a checkpoint on a dataset split.")
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint (e.g. RUN_DIR/best.pt)")
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="default: test"
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=None,
        help="S >= 1 for the likelihood (default: eval.samples; eval.samples=0 skips it)",
    )
    p.add_argument(
        "--hypotheses",
        type=_non_negative_int,
        default=None,
        help="hypotheses for GED / HM-IoU (default: eval.hypotheses; 0 = none)",
    )
    p.add_argument("--omission", action="store_true", help="seeded block omission on the images")
    p.add_argument(
        "--max-images", type=_non_negative_int, default=0, help="evaluate only the first N images"
    )
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--grid", type=Path, default=None, help="write a sample grid PNG here")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="e.g. data.root=/moved/lfw"
    )
    return p


def evaluate_main(argv: Sequence[str] | None = None, prog: str = "segcvae evaluate") -> int:
    """``tools/evaluate.py``: checkpoint -> table on stdout (+ JSON)."""
    parser = evaluate_parser(prog)
    args, overrides = _split_overrides(parser, argv)
    setup_logging(args.quiet)
    from segcvae.data import build_transforms
    from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from segcvae.engine.data import eval_loader, open_dataset
    from segcvae.engine.distributed import resolve_device
    from segcvae.engine.evaluation import eval_settings, evaluate
    from segcvae.engine.report import format_markdown, save_sample_grid
    from segcvae.models import family_of

    try:
        for path, flag in ((args.json, "--json"), (args.grid, "--grid")):
            if path is not None:
                _check_writable_file(path, flag)
        ckpt = load_checkpoint(args.ckpt)
        model, cfg = model_from_checkpoint(ckpt, "cpu", overrides)
        model.to(
            resolve_device(
                args.device or cfg.train.device, key="--device" if args.device else "train.device"
            )
        )
        meta = ckpt["meta"]
        transform = build_transforms(
            cfg.data, args.split, omission=args.omission, omission_seed=cfg.eval.omission_seed
        )
        dataset = open_dataset(cfg.data, args.split, transform)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)
    if int(dataset.num_classes) != int(meta["num_classes"]):
        return _fail(
            f"{args.ckpt} was trained with {meta['num_classes']} classes, the {args.split} data has "
            f"{dataset.num_classes}",
            USAGE_ERROR,
        )
    settings = eval_settings(
        cfg.eval,
        split=args.split,
        samples=args.samples,
        hypotheses=args.hypotheses,
        batch_size=args.batch_size,
        omission=args.omission,
        max_images=args.max_images,  # the whole split unless asked (eval.max_images: validation)
        num_vis=None if args.grid else 0,
    )
    samples, hypotheses = settings.samples, settings.hypotheses
    loader = eval_loader(dataset, settings.batch_size, cfg.data.num_workers)
    result = evaluate(
        model,
        loader,
        int(meta["num_classes"]),
        settings,
        ignore_index=cfg.data.ignore_index,
        seed=cfg.train.seed,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    model_name = family_of(cfg).describe(cfg)
    report = {
        "checkpoint": str(args.ckpt),
        "step": int(ckpt["step"]),
        "arch": cfg.model.arch,
        "model": model_name,
        **({"objective": cfg.loss.objective} if cfg.model.arch == "sohn" else {}),
        "nll_estimator": model.likelihood_methods[0] if samples > 0 else None,
        "dataset": cfg.data.name,
        "split": args.split,
        "omission": bool(args.omission),
        "samples": samples,
        "hypotheses": hypotheses,
        **result.metrics,
        "class_names": list(meta["class_names"]),
    }
    # Write the files first: the table on stdout is the sign of success.
    written = []
    try:
        if args.json:
            from segcvae.engine.logger import _jsonable

            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
            written.append(args.json)
        if args.grid and result.vis is not None:
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            save_sample_grid(result.vis, args.grid, meta["palette"], cfg.data.mean, cfg.data.std)
            written.append(args.grid)
    except OSError as e:
        print(format_markdown(result.metrics, list(meta["class_names"])), file=sys.stderr)
        return _fail(
            f"evaluated, but could not write {e.filename or ''}: {e.strerror or e}", RUN_ERROR
        )
    print(
        f"{args.ckpt} (step {report['step']}, {model_name}) on {cfg.data.name}/{args.split}"
        + (" with block omission" if args.omission else "")
    )
    print(format_markdown(result.metrics, list(meta["class_names"])))
    from segcvae.engine.validation import warn_unscored_classes

    warn_unscored_classes(result.metrics, list(meta["class_names"]), args.split)
    for path in written:
        log.info("wrote %s", path)
    return 0


# -------------------------------------------------------------------------------------- predict
def predict_parser(prog: str = "segcvae predict") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Segment image files. Writes <stem>_mask.png (class indices with a palette, at "
        "the input's size), <stem>_overlay.png, <stem>_samples.png (hypotheses), "
        "<stem>_uncertainty.png (entropy) and <stem>_foreground.png (8-bit grayscale: the fraction "
        "of hypotheses that are not background, x255). A NIfTI input (.nii, .nii.gz; a 3D volume "
        "slice by slice along data.nifti_axis) also gets <stem>_mask.nii.gz, "
        "<stem>_foreground.nii.gz and <stem>_uncertainty.nii.gz on its voxel grid.",
    )
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument(
        "--input", nargs="+", required=True, metavar="PATH", help="files, folders or globs"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=8,
        help="hypotheses in the samples grid (default 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the hypotheses (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument(
        "--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device)"
    )
    p.add_argument("--quiet", action="store_true")
    return p


def predict_main(argv: Sequence[str] | None = None, prog: str = "segcvae predict") -> int:
    """``tools/predict.py``: checkpoint + images -> masks, overlays, samples, uncertainty maps.

    A thin layer over :class:`segcvae.api.Predictor`: read the files, call it, write the pictures.
    """
    parser = predict_parser(prog)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    if args.batch_size < 1:
        return _fail("--batch-size must be >= 1", USAGE_ERROR)
    from segcvae.api import Predictor, load_image
    from segcvae.data import DataError
    from segcvae.data.nifti import is_nifti
    from segcvae.engine.checkpoint import load_checkpoint
    from segcvae.engine.predict import expand_inputs, input_stem, predict_nifti, write_prediction

    try:
        _check_output_folder(args.out, "--out")
        ckpt = load_checkpoint(args.ckpt)
        device = args.device or str(ckpt["config"].get("train", {}).get("device", "auto"))
        predictor = Predictor.from_checkpoint(ckpt, device=device, batch_size=args.batch_size)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)
    palette = predictor.palette
    paths = expand_inputs(args.input)
    if not paths:
        return _fail(f"no input images found in {args.input}", USAGE_ERROR)
    if not any(p.exists() for p in paths):  # nothing to do: one line, no --out folder made
        return _fail(f"--input: not found: {', '.join(map(str, paths))}", USAGE_ERROR)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _fail(f"--out {args.out}: cannot create the folder ({e.strerror or e})", USAGE_ERROR)
    failed: list[str] = []
    used: dict[str, int] = {}
    batch: list[tuple[Path, str, object]] = []

    def flush() -> None:
        if not batch:
            return
        preds = predictor.predict_arrays([im for _, _, im in batch], samples=args.samples)
        for (path, stem, image), pred in zip(batch, preds, strict=True):
            written = write_prediction(args.out, stem, image, pred, palette, predictor.num_classes)
            log.info("%s -> %s", path, ", ".join(p.name for p in written))
        batch.clear()

    def unique_stem(path: Path) -> str:
        stem = input_stem(path)
        if stem in used:  # same name from different folders: keep both
            used[stem] += 1
            return f"{stem}_{used[stem]}"
        used[stem] = 0
        return stem

    with predictor.seeded(args.seed):  # one seed for the whole call
        for path in paths:
            try:
                if is_nifti(path):  # slice by slice, also written back as NIfTI
                    written = predict_nifti(
                        predictor, path, args.out, unique_stem(path), args.samples
                    )
                    log.info("%s -> %s", path, ", ".join(p.name for p in written[-3:]))
                    continue
                image = load_image(path)
            except (DataError, OSError) as e:  # a DataError names the file
                print(
                    f"error: {e}" if str(path) in str(e) else f"error: {path}: {e}",
                    file=sys.stderr,
                )
                failed.append(str(path))
                continue
            batch.append((path, unique_stem(path), image))
            if len(batch) == args.batch_size:
                flush()
        flush()
    done = len(paths) - len(failed)
    print(f"{done} of {len(paths)} images segmented into {args.out}")
    if failed:
        print(f"error: {len(failed)} unreadable input(s): {', '.join(failed)}", file=sys.stderr)
        return USAGE_ERROR  # the inputs are the user's: the same code as a missing --ckpt
    return 0


# --------------------------------------------------------------------------------------- export
ONNX_TOLERANCE = 1e-4  # max |logit difference| accepted between onnxruntime and PyTorch (CPU)


def export_parser(prog: str = "segcvae export") -> argparse.ArgumentParser:
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
    return p


def _shapes_examples(n: int, size: int = 96) -> list[Any]:
    """n test images of the embedded shapes data, (size, size, 3) uint8."""
    from segcvae.data.shapes import ShapesDataset

    data = ShapesDataset("test", n, image_size=size)
    return [data.render(i).image for i in range(n)]


def export_main(argv: Sequence[str] | None = None, prog: str = "segcvae export") -> int:
    """``tools/export.py``: checkpoint -> two ONNX files, checked against PyTorch."""
    parser = export_parser(prog)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    if args.samples < 2:
        return _fail(
            "--samples must be >= 2 (S stays dynamic in the exported sampler)", USAGE_ERROR
        )
    from segcvae.api import load_image
    from segcvae.data import DataError
    from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from segcvae.engine.predict import expand_inputs
    from segcvae.export import MULTIPLE, ExportError, check_onnx, export_onnx, noise_formula

    try:
        # both files, before the (long) export: the sampler is named as export_onnx names it
        sampler = args.out.with_name(f"{args.out.stem}_sampler{args.out.suffix or '.onnx'}")
        _check_writable_file(args.out, "--out")
        _check_writable_file(sampler, f"--out {args.out}: its sampler file")
        ckpt = load_checkpoint(args.ckpt)
        model, cfg = model_from_checkpoint(ckpt, "cpu")
        images = (
            [load_image(p) for p in expand_inputs(args.images)]
            if args.images
            else _shapes_examples(4)
        )
    except (DataError, OSError, *_errors()) as e:
        return _fail(_message(e), USAGE_ERROR)
    if not images:
        return _fail(f"no images found in {args.images}", USAGE_ERROR)
    try:
        paths = export_onnx(model, cfg, ckpt["meta"], args.out, samples=args.samples)
    except ExportError as e:
        return _fail(str(e), USAGE_ERROR)
    shape = ",".join(["S", "B", *(noise_formula(model) or ["1"])])
    print(f"wrote {paths[0]} (image -> logits) and {paths[1]} (image, noise {shape} -> samples)")
    if args.no_check:
        return 0
    side = max(MULTIPLE, -(-int(cfg.data.image_size) // MULTIPLE) * MULTIPLE)
    sizes = [(side, side), (side + MULTIPLE, side + 2 * MULTIPLE)]  # the model's size and another
    try:
        diff = check_onnx(model, cfg, paths, images, sizes, samples=args.samples)
    except ExportError as e:
        return _fail(str(e), USAGE_ERROR)
    where = " and ".join(f"{h}x{w}" for h, w in sizes)
    print(
        f"onnxruntime vs PyTorch (CPU), {len(images)} images at {where}, S={args.samples}: "
        f"max |logit diff| deterministic {diff['logits']:.2e}, sampler {diff['samples']:.2e} "
        f"(limit {ONNX_TOLERANCE:.0e})"
    )
    if max(diff["logits"], diff["samples"]) > ONNX_TOLERANCE:
        return _fail(
            f"the ONNX graphs differ from PyTorch by more than {ONNX_TOLERANCE}", RUN_ERROR
        )
    return 0


# ----------------------------------------------------------------------------------------- demo
def demo_parser(prog: str = "segcvae demo") -> argparse.ArgumentParser:
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
    return p


def demo_main(argv: Sequence[str] | None = None, prog: str = "segcvae demo") -> int:
    """``segcvae demo``: serve the page until interrupted."""
    args = demo_parser(prog).parse_args(argv)
    setup_logging()
    from segcvae.demo import offline_environment

    offline_environment()
    if importlib.util.find_spec("gradio") is None:
        return _fail("the demo needs gradio: pip install -e '.[demo]'", USAGE_ERROR)
    from segcvae.api import Predictor
    from segcvae.demo import launch

    try:
        predictor = Predictor.from_checkpoint(args.ckpt, device=args.device)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)
    print(f"segcvae demo of {args.ckpt} on http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        launch(predictor, host=args.host, port=args.port)
    except OSError as e:  # gradio: "Cannot find empty port ..." (in use, or not ours to bind)
        reason = _message(e).split(". ")[0]
        return _fail(
            f"--host {args.host} --port {args.port}: cannot serve there ({reason}); choose "
            "another --port",
            USAGE_ERROR,
        )
    return 0


# ------------------------------------------------------------------------------------- crossval
def crossval_parser(prog: str = "segcvae crossval") -> argparse.ArgumentParser:
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
    p.add_argument("--folds", type=_positive_int, default=5, help="k (default 5)")
    p.add_argument("--out", type=Path, required=True, help="cross-validation folder")
    p.add_argument(
        "--folds-seed", type=_non_negative_int, default=0, help="seed of the deal into folds"
    )
    p.add_argument(
        "--samples",
        type=_positive_int,
        default=None,
        help="S of the test likelihood (eval.samples)",
    )
    p.add_argument(
        "--hypotheses",
        type=_non_negative_int,
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
    p.add_argument("overrides", nargs="*", metavar="section.key=value")
    return p


def crossval_main(argv: Sequence[str] | None = None, prog: str = "segcvae crossval") -> int:
    """``tools/crossval.py``: config + k -> DIR/fold<k>/ runs and DIR/crossval.json."""
    parser = crossval_parser(prog)
    args, overrides = _split_overrides(parser, argv)
    only = None
    if args.only is not None:  # "--only 0 data.root=..." : the nargs list ends at the first K=V
        only = [_int_or_error(parser, "--only", v) for v in args.only if "=" not in v]
        overrides += [v for v in args.only if "=" in v]
        if not only:
            parser.error("argument --only: expected at least one fold index")
    setup_logging(args.quiet)
    from segcvae.crossval import crossval, format_summary
    from segcvae.engine.trainer import DivergenceError

    try:
        _check_output_folder(args.out, "--out")
        progress = not args.no_progress and not args.quiet and sys.stderr.isatty()
        summary = crossval(
            args.config,
            args.out,
            folds=args.folds,
            overrides=overrides,
            folds_seed=args.folds_seed,
            samples=args.samples,
            hypotheses=args.hypotheses,
            progress=progress,
            only=only,
            retest=args.retest,
        )
    except DivergenceError as e:
        return _fail(str(e), RUN_ERROR)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)
    print(format_summary(summary))
    print(f"wrote {args.out / 'crossval.json'}")
    return 0


# ------------------------------------------------------------------------------------ benchmark
def benchmark_main(argv: Sequence[str] | None = None) -> int:
    """Forward to :func:`segcvae.benchmark.main`, with ``--json`` checked before the (minutes
    long) measurement and the user's mistakes as one line with exit code 2."""
    from segcvae.benchmark import main as benchmark

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--json", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    try:
        if known.json is not None:
            _check_writable_file(known.json, "--json")
        return int(benchmark(argv) or 0)
    except _errors() as e:
        return _fail(_message(e), USAGE_ERROR)


COMMANDS = {
    "train": train_main,
    "evaluate": evaluate_main,
    "predict": predict_main,
    "export": export_main,
    "demo": demo_main,
    "crossval": crossval_main,
    "benchmark": benchmark_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``segcvae COMMAND [ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(
            "usage: segcvae {train,evaluate,predict,export,demo,crossval,benchmark} [ARGS]\n\n"
            "  train      train from a config (default: the embedded shapes job)\n"
            "  evaluate   metrics of a checkpoint on a split (pixel accuracy, IoU, NLL, GED)\n"
            "  predict    masks, overlays, samples and uncertainty maps for image files\n"
            "  export     ONNX files of the predictor and the sampler, checked with onnxruntime\n"
            "  demo       a local web page: upload an image, see masks, hypotheses, uncertainty\n"
            "  crossval   k-fold cross-validation: a model per fold, per-case metrics pooled\n"
            "  benchmark  speed and memory of the models\n\n"
            "segcvae COMMAND --help for the options of a command.",
            file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout,
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
            return USAGE_ERROR
        return 0 if argv else USAGE_ERROR
    command, rest = argv[0], argv[1:]
    if command == "benchmark":
        return benchmark_main(rest)
    return COMMANDS[command](rest, prog=f"segcvae {command}")


def _message(e: BaseException) -> str:
    """One line: an OSError from the system as ``<path>: <reason>``, ours as its message."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) if "\n" in str(e) else str(e)


if __name__ == "__main__":
    sys.exit(main())
