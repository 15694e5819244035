"""The run folder: refuse to train over another run, clear it for ``--overwrite``, create it, and
say in one line what is wrong when it cannot be created or written.

A run folder that cannot be made or written (a read-only file system, no permission, a full disk,
a file where a folder should be) is the user's choice of path, not a bug: :func:`prepare_run_dir`
turns the ``OSError`` into a :class:`RunDirError` that names the path and the system's reason, which
the command line reports as one line with exit code 2.

Run folder::

    config.yaml      the resolved config
    last.pt          the latest checkpoint (every ``train.checkpoint_every`` steps and at each evaluation)
    best.pt          the checkpoint with the best validation ``train.select`` metric
    metrics.jsonl    one JSON object per evaluation (step, mean training losses, validation metrics)
    train_log.jsonl  mean training losses every ``train.log_every`` steps
    curves.png       training curves
    samples/         validation sample grids, one per evaluation
    tensorboard/     TensorBoard events (when tensorboard is installed)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from segcvae.config import ConfigError
from segcvae.engine.checkpoint import unfinished_saves

# What a run writes into its folder (``--overwrite`` removes these, nothing else).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl", "config.yaml", "curves.png")
RUN_FOLDERS = ("samples", "tensorboard")
_RUN_MARKERS = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl")


class RunExistsError(ConfigError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


class RunDirError(OSError):
    """A run folder cannot be created or written; the message names the path and the reason."""


def prepare_run_dir(path: str | os.PathLike, what: str = "run folder") -> Path:
    """Create ``path`` (and its parents) and check that a file can be written in it.

    An existing folder is kept as it is (what is in it is the caller's business: resume,
    overwrite). The check writes, flushes to disk and removes a small hidden file, so a read-only
    mount or a full disk is found before the first checkpoint, not after an hour of training.

    Args:
        path: The run folder.
        what: How the message names it (e.g. ``"--out"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        RunDirError: One line: ``<what> <path>: cannot <create|write in> <path or the part that
            failed> (<the system's reason>); choose another location``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{what} {path} is an existing file; expected a folder (new or existing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(
            f"{what} {path}: cannot create {_where(e, path)} ({_reason(e)}); choose another location"
        ) from e
    try:
        fd, probe = tempfile.mkstemp(prefix=".segcvae-write-check.", dir=path)
        try:
            os.write(fd, b"segcvae\n")
            os.fsync(fd)  # a full disk fails here, not at the first checkpoint
        finally:
            os.close(fd)
            Path(probe).unlink(missing_ok=True)
    except OSError as e:
        raise RunDirError(
            f"{what} {path}: cannot write in it ({_reason(e)}); choose another location"
        ) from e
    return path


def _where(e: OSError, path: Path) -> str:
    """What could not be created: ``path``, the part the system names, or the file in the way."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{path}: {parent} is a file"
            break
    name = e.filename
    return str(path) if name is None or Path(name) == path else str(name)


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def check_run_dir(run_dir: str | Path, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to train into a folder that holds another run, unless resuming or overwriting.

    Raises:
        RunExistsError: naming the files found, ``--resume``, a new ``--out`` and ``--overwrite``.
        FileExistsError: ``run_dir`` is a file.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is an existing file; expected a run folder")
    if resume or overwrite or not run_dir.is_dir():
        return
    found = [name for name in _RUN_MARKERS if (run_dir / name).exists()]
    if found:
        raise RunExistsError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with --resume, "
            "train into a new --out folder, or replace it with --overwrite"
        )


def clear_run_dir(run_dir: str | Path) -> list[str]:
    """Remove the files of a previous run (:data:`RUN_FILES`, :data:`RUN_FOLDERS`); returns them."""
    run_dir = Path(run_dir)
    removed = []
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    for name in RUN_FOLDERS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)
            removed.append(name + "/")
    return removed


def remove_partial_writes(run_dir: str | Path) -> list[str]:
    """Remove the temporary files of writes that a killed run left unfinished; returns their names.

    Checkpoints are written to a temporary file and renamed over the old one
    (:func:`~segcvae.engine.checkpoint.atomic_save`), and the logs are rewritten on resume through
    ``<name>.tmp``, so a kill mid-write keeps every file whole but leaves the temporary one (a
    checkpoint's size, each time). Only the temporary files of :data:`RUN_FILES` are removed.
    """
    run_dir = Path(run_dir)
    removed = []
    for name in RUN_FILES:
        for path in [*unfinished_saves(run_dir / name), run_dir / f"{name}.tmp"]:
            if path.is_file():
                path.unlink()
                removed.append(path.name)
    return removed


def folder_error(path: str | Path, e: OSError) -> RunDirError:
    """One line for an OS error while writing the run folder: the path, the file and the reason."""
    where = e.filename or path
    return RunDirError(f"run folder {path}: cannot write {where} ({_reason(e)})")


def make_run_dir(run_dir: str | Path) -> bool:
    """Create the run folder and its ``samples/`` (:func:`prepare_run_dir`); returns whether the
    folder is new.

    Raises:
        RunDirError: it cannot be created or written: one line naming the path and the reason.
    """
    run_dir = Path(run_dir)
    new = not run_dir.exists()
    prepare_run_dir(run_dir, "--out")
    try:
        (run_dir / "samples").mkdir(exist_ok=True)
    except OSError as e:
        raise folder_error(run_dir, e) from None
    return new


def remove_unfinished_run(run_dir: str | Path, created: bool) -> None:
    """Undo a run that failed before it wrote a checkpoint: remove what it wrote (its
    :data:`RUN_FILES` and :data:`RUN_FOLDERS`), and the folder itself if the run created it and it
    is empty now. A folder that held other files keeps them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    clear_run_dir(run_dir)
    if created and not any(run_dir.iterdir()):
        run_dir.rmdir()


__all__ = [
    "RunDirError",
    "RunExistsError",
    "check_run_dir",
    "clear_run_dir",
    "folder_error",
    "make_run_dir",
    "prepare_run_dir",
    "remove_partial_writes",
    "remove_unfinished_run",
]
