"""The run folder: refuse to train over another run, clear it for ``--overwrite``, create it, and
say in one line what is wrong when it cannot be written.

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

import shutil
from pathlib import Path

from segcvae.config import ConfigError

# What a run writes into its folder (``--overwrite`` removes these, nothing else).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl", "config.yaml", "curves.png")
RUN_FOLDERS = ("samples", "tensorboard")
_RUN_MARKERS = ("last.pt", "best.pt", "metrics.jsonl", "train_log.jsonl")


class RunExistsError(ConfigError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


class RunFolderError(OSError):
    """The run folder cannot be created or written; the message names the path and the reason."""


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


def folder_error(path: str | Path, e: OSError, doing: str = "write") -> RunFolderError:
    """One line for an OS error on the run folder: the path, what failed and the OS's reason."""
    where = e.filename or path
    reason = e.strerror or str(e) or type(e).__name__
    return RunFolderError(f"cannot {doing} the run folder {path}: {where}: {reason}")


def make_run_dir(run_dir: str | Path) -> bool:
    """Create the run folder (and ``samples/``); returns whether the folder is new.

    Raises:
        RunFolderError: it cannot be created (a read-only file system, no permission, a file in
            the way, a full disk): one line naming the path and the reason.
    """
    run_dir = Path(run_dir)
    new = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
    except OSError as e:
        raise folder_error(run_dir, e, "create") from None
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
