"""What every command shares: logging, ``--import``, overrides, the one-line error and path checks.

The exit codes are stated in :mod:`segcvae.cli`: :data:`USAGE_ERROR` (2) for the user's mistakes
(:func:`errors`), :data:`RUN_ERROR` (1) for a run that failed; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("segcvae")

USAGE_ERROR = 2
RUN_ERROR = 1

# Paths given on the command line or in the config that do not exist or cannot be written.
PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


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


# ---------------------------------------------------------------------------------- --import
def add_import_option(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): a model family (or dataset) kept outside the package."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module first (a dotted name on sys.path / PYTHONPATH, or a path to a "
        ".py file), e.g. a file that registers a model family; repeatable",
    )


def import_modules(names: Sequence[str]) -> None:
    """Import each ``--import`` module, in order: a dotted name on ``sys.path`` (the current folder
    included), or a ``.py`` file, imported under its stem as module name (``plugins/phiseg.py`` ->
    ``phiseg``), once.

    Raises:
        segcvae.config.ConfigError: The module or file does not exist (one line naming it); an
            error raised while the module runs is its own and keeps its traceback.
    """
    from segcvae.config import ConfigError

    if names and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # the console script's path lacks the current folder
    for name in names:
        if name.endswith(".py") or "/" in name or os.sep in name:
            path = Path(name).resolve()
            if not path.is_file():
                raise ConfigError(f"--import {name}: no such file; expected a .py file or a module")
            stem = path.stem
            loaded = sys.modules.get(stem)
            if loaded is not None:
                if Path(getattr(loaded, "__file__", "") or "").resolve() == path:
                    continue  # imported already (a second command in the same process)
                raise ConfigError(
                    f"--import {name}: a module named {stem!r} is already imported; rename the file"
                )
            spec = importlib.util.spec_from_file_location(stem, path)
            module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[stem] = module  # dataclasses and pickling look the module up by name
            try:
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            except BaseException:
                del sys.modules[stem]
                raise
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise  # a module it imports is missing: the module's own problem, traceback
            raise ConfigError(
                f"--import {name}: no module named {e.name!r} on sys.path (the current folder, "
                "PYTHONPATH, installed packages); give a module name or a path to a .py file"
            ) from None


def begin(args: argparse.Namespace, quiet: bool = False) -> int | None:
    """Set up logging and import the ``--import`` modules: None, or the exit status of a failure."""
    setup_logging(quiet)
    from segcvae.config import ConfigError

    try:
        import_modules(getattr(args, "imports", []) or [])
    except ConfigError as e:
        return fail(str(e), USAGE_ERROR)
    return None


# ---------------------------------------------------------------------------------- arguments
def split_overrides(
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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_or_error(parser: argparse.ArgumentParser, flag: str, text: str) -> int:
    """``int(text)``, or argparse's usage error naming ``flag``."""
    try:
        return int(text)
    except ValueError:
        parser.error(f"argument {flag}: expected an integer, got {text!r}")


# ---------------------------------------------------------------------------------- errors
def fail(message: str, code: int) -> int:
    """Print ``error: <message>`` to stderr and return ``code``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def errors() -> tuple[type[BaseException], ...]:
    """A user's mistakes: reported as a one-line message with exit code 2 rather than a traceback.

    Anything else (a ValueError from deep inside torch, a KeyError in our code) is a bug and keeps
    its traceback (exit code 1).
    """
    from segcvae.config import ConfigError
    from segcvae.data import DataError
    from segcvae.engine.checkpoint import CheckpointError
    from segcvae.engine.run_dir import RunDirError

    return (ConfigError, DataError, CheckpointError, RunDirError) + PATH_ERRORS


def message(e: BaseException) -> str:
    """One line: an OSError from the system as ``<path>: <reason>``, ours as its message."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) if "\n" in str(e) else str(e)


# ---------------------------------------------------------------------------------- paths
def check_output_folder(path: Path, flag: str) -> None:
    """Raise FileExistsError if ``path`` is an existing file (an output folder was asked for)."""
    if path.exists() and not path.is_dir():
        raise FileExistsError(
            f"{flag} {path} is an existing file; expected a folder (new or existing)"
        )


def check_writable_file(path: Path, flag: str) -> None:
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


def show_progress(args: argparse.Namespace) -> bool:
    """A progress bar unless ``--no-progress`` / ``--quiet`` or stderr is not a terminal."""
    quiet = getattr(args, "no_progress", False) or getattr(args, "quiet", False)
    return not quiet and sys.stderr.isatty()
