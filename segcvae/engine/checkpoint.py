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


def unfinished_saves(path: str | Path) -> list[Path]:
    """The temporary files that :func:`atomic_save` to ``path`` left behind when its process was
    killed mid-write (``path`` itself is then the previous file, whole): ``.<name>.<random>.tmp``
    beside it, the names ``atomic_save``'s ``mkstemp`` gives."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


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
    if isinstance(data["config"], dict):
        data["config"] = with_keys_of_then(data["config"])
    return data


def with_keys_of_then(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the keys added since it was written set to what the code did then.

    A checkpoint holds its whole resolved config, so a key it lacks did not exist when it was
    written; where that key's default now differs from what the code did then, the old behaviour
    is filled in (so old checkpoints load, and resume, as the model they are):

    * ``model.head_channels`` (2026-12-05; default 16): the generation net was
      ``model.hidden_channels`` wide.
    * ``train.fused_adam`` (2026-12-05; default true): Adam was the multi-tensor one.
    """
    out = dict(config)
    model, train = out.get("model"), out.get("train")
    if isinstance(model, dict) and "head_channels" not in model:
        out["model"] = {**model, "head_channels": model.get("hidden_channels", 32)}
    if isinstance(train, dict) and "fused_adam" not in train:
        out["train"] = {**train, "fused_adam": False}
    return out


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
        CheckpointError: The weights do not fit the model the config describes; the message says
            which model settings the overrides changed and a few of the keys that differ
            (:func:`describe_state_mismatch`).
    """
    from segcvae.config import Config, apply_overrides, check_encoder_name
    from segcvae.models import create_model

    cfg = Config.from_dict(apply_overrides(ckpt["config"], overrides or []), "checkpoint config")
    check_encoder_name(cfg.model.encoder_name)
    model = create_model(cfg, int(ckpt["meta"]["num_classes"]))
    what = "the checkpoint's weights do not fit the model its config describes" + (
        f" with overrides {overrides}" if overrides else ""
    )
    load_model_state(model, ckpt["model"], what, config=cfg, stored_config=ckpt["config"])
    return model.to(device).eval(), cfg


def load_model_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    what: str,
    config: Any = None,
    stored_config: dict[str, Any] | None = None,
) -> None:
    """``model.load_state_dict(state)`` (strict), with a short :class:`CheckpointError` if it fails.

    Args:
        model: The model built from ``config``.
        state: The checkpoint's ``"model"`` state dict.
        what: The message's start, e.g. ``"runs/x/last.pt: the weights do not fit the model"``.
        config: The config ``model`` was built from (a :class:`~segcvae.config.Config` or its
            ``to_dict()``), to say which model settings differ from ``stored_config``.
        stored_config: The checkpoint's ``"config"``.

    Raises:
        CheckpointError: ``<what>: <describe_state_mismatch(...)>``, a few hundred characters
            at most, however many keys differ.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = describe_state_mismatch(
            model.state_dict(), state, config=config, stored_config=stored_config
        )
        raise CheckpointError(f"{what}: {detail}") from e


def describe_state_mismatch(
    expected: dict[str, torch.Tensor],
    found: dict[str, torch.Tensor],
    config: Any = None,
    stored_config: dict[str, Any] | None = None,
    sections: tuple[str, ...] = ("model",),
    examples: int = 3,
) -> str:
    """What differs between a model's state dict and a checkpoint's, in one short line.

    Settings first (``model.arch prob_unet vs the checkpoint's sohn``: the config the model was
    built from against the checkpoint's, in ``sections``), then the keys: ``142 missing keys,
    e.g. a, b, c; 3 unexpected, e.g. x, y, z; 1 of another shape, e.g. head.weight (4, 8) vs the
    checkpoint's (3, 8)``. Used where a checkpoint is loaded into a model (evaluate, predict,
    export, and a resumed training run).

    Args:
        expected: ``model.state_dict()`` of the model being loaded.
        found: The checkpoint's state dict.
        config: The config the model was built from (``Config`` or a dict); None skips settings.
        stored_config: The checkpoint's config dict; None skips settings.
        sections: Config sections compared (the ones that decide the model's shape).
        examples: Keys named per kind of difference.

    Returns:
        One line without newlines; ``"the weights match"`` when nothing differs.
    """
    parts = []
    if config is not None and stored_config is not None:
        parts += [
            f"{key} {_show(new)} vs the checkpoint's {_show(old)}"
            for key, new, old in config_differences(config, stored_config, sections)
        ]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(expected[k].shape)} vs the checkpoint's {tuple(found[k].shape)}"
        for k in expected
        if k in found
        and hasattr(found[k], "shape")
        and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    keys = []
    for items, label in (
        (missing, "missing key{s}"),
        (unexpected, "unexpected"),
        (reshaped, "of another shape"),
    ):
        if items:
            shown = ", ".join(items[:examples]) + (", ..." if len(items) > examples else "")
            noun = label.format(s="" if len(items) == 1 else "s")
            keys.append(
                f"{len(items)} {noun}, e.g. {shown}" if len(items) > 1 else f"1 {noun}: {shown}"
            )
    if keys:
        parts.append("; ".join(keys))
    if config is not None and stored_config is not None and keys and len(parts) == 1:
        parts.insert(0, "same model settings (a checkpoint of another segcvae version?)")
    return "; ".join(parts) if parts else "the weights match"


def config_differences(
    config: Any, stored_config: dict[str, Any], sections: tuple[str, ...] = ("model",)
) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in config, value in stored_config)`` for each setting that differs.

    Both configs are resolved first (defaults filled in), so a key the stored config leaves out
    differs only if its default does.
    """
    from segcvae.config import Config

    new = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    try:
        old = Config.from_dict(stored_config, "checkpoint config").to_dict()
    except Exception:  # an old or broken stored config: compare it as written
        old = stored_config
    out: list[tuple[str, Any, Any]] = []
    for section in sections:
        a, b = _flat(new.get(section) or {}, section), _flat(old.get(section) or {}, section)
        out += [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out


def _flat(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}.{k}"))
        else:
            out[f"{prefix}.{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def _show(v: Any) -> str:
    text = "unset" if v is None else str(v)
    return text if len(text) <= 60 else text[:57] + "..."
