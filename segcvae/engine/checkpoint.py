"""Self-describing checkpoints, written atomically and loaded without running code.

A checkpoint is plain data (tensors, numbers, strings, lists, dicts), so
``torch.load(path, weights_only=True)`` reads it. Two kinds are written:

* a **training** checkpoint (``last.pt``) holds everything needed to continue the run exactly::

    {"format": 1, "kind": "training", "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ... | None, "step": int, "best_metric": float | None, "select": "mean_iou",
     "rng": {...}, "config": cfg.to_dict(), "meta": {"num_classes", "class_names", "palette"}}

* an **inference** checkpoint (``best.pt``) holds only what evaluation, prediction and export need:
  ``format``, ``kind="inference"``, ``model``, ``step``, ``best_metric`` and ``select`` (the
  validation metric and value that chose it), ``config`` and ``meta``.
  The Adam moments are twice the size of the weights, so this is about a third of ``last.pt``;
  to continue training, resume from ``last.pt``.

Both load with :func:`load_checkpoint`, and :func:`model_from_checkpoint` rebuilds the model from
either. Files are written to a temporary file in the same folder, flushed to disk and renamed over
the target, so a process killed at any moment leaves either the old or the new checkpoint, never
half. A model with non-finite weights is never written, and a checkpoint whose weights are not
finite is refused when it is read.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or inconsistent; the message names the file."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    Args:
        obj: What to save (plain data and tensors).
        path: Target file; its folder must exist.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable (best effort: not every platform can open a directory).
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def capture_rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and python RNG states as tensors and lists (``weights_only``-safe)."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(version), "state": list(mt_state), "gauss": gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def all_finite(module: nn.Module) -> bool:
    """True when every parameter and floating buffer of ``module`` is finite."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return False
    return True


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    step: int,
    config: dict[str, Any],
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    best_metric: float | None = None,
    rng: dict[str, Any] | None = None,
    inference_only: bool = False,
    select: str = "mean_iou",
) -> None:
    """Write a self-describing checkpoint atomically.

    Args:
        path: Target file.
        model: The (unwrapped) model; its ``state_dict`` is saved.
        step: Optimisation steps completed.
        config: ``cfg.to_dict()``.
        meta: ``{"num_classes", "class_names", "palette"}`` of the training data.
        optimizer: Optional optimizer to resume.
        scheduler: Optional LR scheduler to resume.
        scaler: Optional ``torch.amp.GradScaler`` to resume.
        best_metric: Best validation value of the ``select`` metric so far.
        rng: RNG states; defaults to :func:`capture_rng_state`.
        inference_only: Write an inference checkpoint: no optimizer, scheduler, scaler or RNG
            state (the arguments are ignored).
        select: The validation metric ``best_metric`` is a value of (``train.select``).

    Raises:
        CheckpointError: If the model holds non-finite values (nothing is written then).
    """
    if not all_finite(model):
        raise CheckpointError(f"refusing to write {path}: the model has non-finite weights")
    data: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": "inference" if inference_only else "training",
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        "best_metric": None if best_metric is None or math.isnan(best_metric) else best_metric,
        "select": select,
        "config": config,
        "meta": _plain(meta),
    }
    if not inference_only:
        data["optimizer"] = optimizer.state_dict() if optimizer is not None else None
        data["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        data["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        data["rng"] = rng if rng is not None else capture_rng_state()
    atomic_save(data, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code runs while loading).

    Raises:
        CheckpointError: Naming the file, when it is missing, not a PyTorch file, unreadable, not a
            segcvae checkpoint, or holds weights that are not finite (a diverged run).
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder; expected a checkpoint file such as {path / 'best.pt'}"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path) and not _legacy_torch_file(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (not a file written by torch.save, or truncated); "
            "expected a run's best.pt or last.pt"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not a usable file"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from e
    missing = [
        k
        for k in ("model", "step", "config", "meta")
        if not isinstance(data, dict) or k not in data
    ]
    if missing:
        raise CheckpointError(f"{path} is not a segcvae checkpoint (missing {missing})")
    bad = [
        k
        for k, v in data["model"].items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of {len(data['model'])} weight tensors hold NaN or inf (e.g. "
            f"{bad[0]}): not a usable model (a run that diverged?); use an earlier checkpoint"
        )
    return data


def _legacy_torch_file(path: Path) -> bool:
    """The pre-1.6 ``torch.save`` format: a pickle stream (protocol >= 2 starts with 0x80)."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def _plain(obj: Any) -> Any:
    """Tuples to lists, numpy scalars to python: keep the checkpoint plain data."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def model_from_checkpoint(
    ckpt: dict[str, Any], device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> tuple[nn.Module, Any]:
    """Rebuild the model a checkpoint describes, with its weights, in eval mode.

    Args:
        ckpt: From :func:`load_checkpoint`.
        device: Where to put the model.
        overrides: ``section.key=value`` changes to the stored config (e.g. a moved ``data.root``).

    Returns:
        ``(model, cfg)``.

    Raises:
        ConfigError: The stored config (with ``overrides``) is invalid.
        CheckpointError: The weights do not fit the model the config describes.
    """
    from segcvae.config import Config, apply_overrides, check_encoder_name
    from segcvae.models import create_model

    cfg = Config.from_dict(apply_overrides(ckpt["config"], overrides or []), "checkpoint config")
    check_encoder_name(cfg.model.encoder_name)
    model = create_model(cfg, int(ckpt["meta"]["num_classes"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            "the checkpoint's weights do not fit the model its config describes"
            + (f" (overrides {overrides})" if overrides else "")
            + f": {' '.join(first[1:2] or first[:1]).strip()}"
        ) from e
    return model.to(device).eval(), cfg
