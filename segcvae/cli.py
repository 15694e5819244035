"""Command-line entry points: ``segcvae train|evaluate|predict|export|demo|crossval|benchmark``.

``segcvae COMMAND`` (:func:`main`) and ``tools/train.py``, ``tools/evaluate.py``,
``tools/predict.py``, ``tools/crossval.py`` ... call the same functions (:func:`train_main`,
:func:`evaluate_main`, :func:`predict_main`, :func:`crossval_main`, ...), one module per command in
:mod:`segcvae.commands`: each parses its arguments, calls the library (``segcvae.evaluate``,
``Predictor.predict_files``, ...) and prints. Every command takes ``--import MODULE`` (repeatable):
a module imported before the config is read, e.g. a file that registers a model family kept
outside the package (``--import my_family`` on ``sys.path``, or ``--import path/to/my_family.py``);
families installed with a ``segcvae.families`` entry point need no flag.

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

import sys
from collections.abc import Sequence

from segcvae.commands import benchmark, crossval, demo, evaluate, export, predict, train
from segcvae.commands.common import RUN_ERROR, USAGE_ERROR, setup_logging
from segcvae.commands.common import errors as _errors
from segcvae.commands.common import fail as _fail
from segcvae.commands.common import message as _message

train_main = train.main
evaluate_main = evaluate.main
predict_main = predict.main
export_main = export.main
demo_main = demo.main
crossval_main = crossval.main
benchmark_main = benchmark.main

COMMANDS = {
    "train": train_main,
    "evaluate": evaluate_main,
    "predict": predict_main,
    "export": export_main,
    "demo": demo_main,
    "crossval": crossval_main,
    "benchmark": benchmark_main,
}

USAGE = """usage: segcvae {train,evaluate,predict,export,demo,crossval,benchmark} [ARGS]

  train      train from a config (default: the embedded shapes job)
  evaluate   metrics of a checkpoint on a split (pixel accuracy, IoU, NLL, GED)
  predict    masks, overlays, samples and uncertainty maps for image files
  export     ONNX files of the predictor and the sampler, checked with onnxruntime
  demo       a local web page: upload an image, see masks, hypotheses, uncertainty
  crossval   k-fold cross-validation: a model per fold, per-case metrics pooled
  benchmark  speed and memory of the models

segcvae COMMAND --help for the options of a command."""


def main(argv: Sequence[str] | None = None) -> int:
    """``segcvae COMMAND [ARGS]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(USAGE, file=sys.stdout if asked or not argv else sys.stderr)
        if argv and not asked:
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
            return USAGE_ERROR
        return 0 if argv else USAGE_ERROR
    command, rest = argv[0], argv[1:]
    if command == "benchmark":
        return benchmark_main(rest)
    return COMMANDS[command](rest, prog=f"segcvae {command}")


__all__ = [
    "COMMANDS",
    "RUN_ERROR",
    "USAGE_ERROR",
    "_errors",
    "_fail",
    "_message",
    "benchmark_main",
    "crossval_main",
    "demo_main",
    "evaluate_main",
    "export_main",
    "main",
    "predict_main",
    "setup_logging",
    "train_main",
]


if __name__ == "__main__":
    sys.exit(main())
