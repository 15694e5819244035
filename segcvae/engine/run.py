"""Train an experiment into a run folder: the one call behind ``tools/train.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segcvae.config import Config
from segcvae.engine.distributed import barrier, cleanup_distributed, init_distributed
from segcvae.engine.run_dir import (
    check_run_dir,
    folder_error,
    remove_unfinished_run,
)
from segcvae.engine.trainer import Trainer


def _inside(filename: Any, folder: str | Path) -> bool:
    """Whether an OS error's file is in the run folder (or is the folder)."""
    if not isinstance(filename, (str, Path)):
        return False
    folder = Path(folder).absolute()
    path = Path(filename).absolute()
    return path == folder or folder in path.parents


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (in one process, or as one rank under torchrun).

    A fresh run that fails before it writes its first checkpoint leaves no half-made run folder.

    Args:
        cfg: The experiment.
        run_dir: Output folder (created).
        resume: Continue from ``run_dir/last.pt`` when it exists.
        progress: Show a progress bar on rank 0.
        overwrite: Replace a run already in ``run_dir`` (else that is a :class:`RunExistsError`).

    Returns:
        The summary of :meth:`Trainer.fit`.

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        RunDirError: ``run_dir`` cannot be created or written (one line: path and reason).
        DivergenceError: The loss or the weights diverged (``last.pt`` is the last good state).
    """
    cfg.validate()
    check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    fresh = not (resume and (Path(run_dir) / "last.pt").is_file())
    dist_info = init_distributed(cfg.train.device)
    trainer = None
    try:
        trainer = Trainer(cfg, run_dir, dist_info, progress=progress, overwrite=overwrite)
        summary = trainer.fit(resume=resume)
        # Rank 0 evaluates alone after the last step; the ranks tear the process group down
        # together (a rank that destroys it while another still runs can abort in gloo).
        barrier()
        return summary
    except BaseException as e:
        if fresh and trainer is not None and trainer.step == 0 and dist_info.is_main:
            remove_unfinished_run(run_dir, trainer.created_run_dir)  # failed before its first step
        if isinstance(e, OSError) and _inside(e.filename, run_dir):
            raise folder_error(run_dir, e) from e
        raise
    finally:
        trainer = None  # the DDP wrapper (and its reducer) goes before its process group
        cleanup_distributed()
