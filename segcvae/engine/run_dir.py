"""Creating a run folder, with one error line when the system refuses.

A run folder that cannot be made or written (a read-only file system, no permission, a full disk,
a file where a folder should be) is the user's choice of path, not a bug: :func:`prepare_run_dir`
turns the ``OSError`` into a :class:`RunDirError` that names the path and the system's reason, which
the command line reports as one line with exit code 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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


__all__ = ["RunDirError", "prepare_run_dir"]
