"""Run bookkeeping: ``metrics.jsonl``, ``train_log.jsonl``, optional TensorBoard events, curves.

Only rank 0 creates a :class:`RunLogger` with ``enabled=True``; on other ranks every method is a
no-op, so the trainer can call it unconditionally.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from segcvae import viz

log = logging.getLogger("segcvae")


class RunLogger:
    """Append one JSON object per evaluation to ``run_dir/metrics.jsonl`` and redraw the curves.

    Training-loss means every ``train.log_every`` steps go to ``run_dir/train_log.jsonl`` (the
    fine-grained training curve).

    Args:
        run_dir: The run folder.
        enabled: False on ranks other than 0.
        tensorboard: Also write TensorBoard events when ``torch.utils.tensorboard`` imports.
    """

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.path = self.run_dir / "metrics.jsonl"
        self.train_path = self.run_dir / "train_log.jsonl"
        self.curves_path = self.run_dir / "curves.png"
        self._tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception:  # tensorboard is optional: not installed -> no events
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def records(self) -> list[dict[str, Any]]:
        """The evaluation records written so far."""
        return _read_jsonl(self.path)

    def train_records(self) -> list[dict[str, Any]]:
        """The training-loss records written so far."""
        return _read_jsonl(self.train_path)

    def truncate_after(self, step: int) -> None:
        """On resume, drop records newer than the checkpoint so the history has no duplicates."""
        if not self.enabled:
            return
        for path in (self.path, self.train_path):
            if not path.is_file():
                continue
            keep = [r for r in _read_jsonl(path) if r.get("step", 0) <= step]
            tmp = path.with_suffix(".jsonl.tmp")
            with open(tmp, "w") as fh:
                for r in keep:
                    fh.write(json.dumps(r) + "\n")
            os.replace(tmp, path)

    def log_train(self, record: dict[str, Any]) -> None:
        """Write one training record ``{"step", "lr", "images_per_s", "train": {...}}``."""
        if not self.enabled:
            return
        with open(self.train_path, "a") as fh:
            fh.write(json.dumps(to_jsonable(record)) + "\n")
        if self._tb is not None:
            for k, v in (record.get("train") or {}).items():
                self._tb.add_scalar(f"train_step/{k}", float(v), record["step"])

    def log(self, record: dict[str, Any]) -> None:
        """Write one evaluation record ``{"step", "train": {...}, "val": {...}, ...}``."""
        if not self.enabled:
            return
        record = to_jsonable(record)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
        if self._tb is not None:
            step = record["step"]
            for section in ("train", "val"):
                for k, v in (record.get(section) or {}).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        self._tb.add_scalar(f"{section}/{k}", v, step)
            for k in ("lr", "images_per_s"):
                if isinstance(record.get(k), (int, float)):
                    self._tb.add_scalar(k, record[k], step)
            self._tb.flush()
        try:
            viz.plot_curves(self.records(), self.curves_path, self.train_records())
        except Exception as e:  # a plotting problem must never stop training
            log.warning("could not draw %s: %s", self.curves_path, e)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping a truncated line", path.name)
    return out


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data: dicts (keys as strings), lists, numbers, strings, None.

    Floats stay floats (NaN and infinities become null), tensors and NumPy arrays become (nested
    lists of) numbers, tuples become lists.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write :func:`to_jsonable` of ``obj`` to ``path`` (indented, parent folders made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    return path
