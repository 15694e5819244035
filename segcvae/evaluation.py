"""Evaluate a checkpoint on a dataset split: ``segcvae.evaluate(ckpt) -> EvaluationReport``.

::

    import segcvae

    report = segcvae.evaluate("runs/default/best.pt", split="test", samples=50, hypotheses=16)
    report.metrics["mean_iou"], report.metrics["ged"]
    print(report.table())           # the markdown table of ``segcvae evaluate``
    report.save_json("test.json")   # what ``segcvae evaluate --json`` writes

``segcvae evaluate``, cross-validation's test of each fold and the Python API call the same
function; the loop itself is :func:`segcvae.engine.eval_loop.evaluate`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from segcvae.config import Config
    from segcvae.engine.eval_loop import VisBatch


@dataclass
class EvaluationReport:
    """What an evaluation found, and what it was of.

    Attributes:
        checkpoint: The checkpoint's path ("" when given as a dict).
        step: Its training step.
        arch: ``model.arch``, the family's name.
        model: What the family calls this model (its ``describe(cfg)``, e.g. the objective).
        nll_estimator: The likelihood estimator behind ``nll`` (``is``, ``mc``, ``exact``), None
            without likelihood samples.
        dataset: ``data.name``.
        split: The split evaluated.
        omission: Whether a seeded block was omitted from every image.
        samples: S of the likelihood (0: none).
        hypotheses: Hypotheses per image (0: none).
        metrics: The metrics (:func:`segcvae.engine.eval_loop.evaluate`).
        class_names: The K class names.
        per_image: Each image's id and own values.
        vis: The images kept for a sample grid (``keep_vis``), else None.
        config: The checkpoint's config (with the overrides).
        palette: One RGB colour per class.
    """

    checkpoint: str
    step: int
    arch: str
    model: str
    nll_estimator: str | None
    dataset: str
    split: str
    omission: bool
    samples: int
    hypotheses: int
    metrics: dict[str, Any]
    class_names: list[str]
    per_image: list[dict[str, Any]] = field(default_factory=list, repr=False)
    vis: VisBatch | None = field(default=None, repr=False)
    config: Config | None = field(default=None, repr=False)
    palette: list[list[int]] = field(default_factory=list, repr=False)

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """The report as plain JSON data: what it was of, then the metrics, then the class names
        (and each image's values with ``per_image``); NaN is None."""
        from segcvae.engine.logger import to_jsonable

        head = ("checkpoint", "step", "arch", "model", "nll_estimator", "dataset", "split")
        out = {k: getattr(self, k) for k in head}
        out |= {"omission": self.omission, "samples": self.samples, "hypotheses": self.hypotheses}
        out |= {**self.metrics, "class_names": list(self.class_names)}
        if per_image:
            out["per_image"] = self.per_image
        return to_jsonable(out)

    def to_json(self, per_image: bool = False) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(per_image), indent=2) + "\n"

    def save_json(self, path: str | os.PathLike, per_image: bool = False) -> Path:
        """Write :meth:`to_json` to ``path`` (parent folders made); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(per_image))
        return path

    def save_grid(self, path: str | os.PathLike) -> Path | None:
        """Write the sample grid of the kept images; None when none were kept (``keep_vis``)."""
        from segcvae.engine.eval_report import save_sample_grid

        if self.vis is None or self.config is None:
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.config.data
        save_sample_grid(self.vis, path, self.palette, data.mean, data.std)
        return path

    def table(self) -> str:
        """The metrics as a markdown table (``| metric | value | meaning |``)."""
        from segcvae.engine.eval_report import format_markdown

        return format_markdown(self.metrics, list(self.class_names))

    @property
    def title(self) -> str:
        """``<checkpoint> (step N, <model>) on <dataset>/<split>[ with block omission]``."""
        omitted = " with block omission" if self.omission else ""
        return f"{self.checkpoint} (step {self.step}, {self.model}) on {self.dataset}/{self.split}{omitted}"


def evaluate(
    checkpoint: str | os.PathLike | dict[str, Any],
    *,
    split: str = "test",
    samples: int | None = None,
    hypotheses: int | None = None,
    omission: bool = False,
    max_images: int = 0,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    overrides: Sequence[str] = (),
    keep_vis: bool = False,
    progress: bool = False,
) -> EvaluationReport:
    """Evaluate a checkpoint on a split of the data it names (its config, with ``overrides``).

    Args:
        checkpoint: ``best.pt`` / ``last.pt`` of a run, or a checkpoint dict already read with
            :func:`segcvae.engine.checkpoint.load_checkpoint`.
        split: ``train``, ``val`` or ``test``.
        samples: S of the likelihood estimates (None: ``eval.samples``; 0: none).
        hypotheses: Hypotheses per image for GED, HM-IoU, ... (None: ``eval.hypotheses``).
        omission: Omit a seeded block from every image (``eval.omission_seed``).
        max_images: Evaluate the first N images only (0: the whole split).
        batch_size: Images per batch (None: ``eval.batch_size``).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``auto`` or a ``torch.device`` (None:
            ``train.device``).
        overrides: ``section.key=value`` changes to the stored config (``data.root=/moved``).
        keep_vis: Keep ``eval.num_vis`` images for :meth:`EvaluationReport.save_grid`.
        progress: Show a progress bar.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        segcvae.engine.checkpoint.CheckpointError: The checkpoint is missing or unusable.
        segcvae.config.ConfigError: A bad override or device;
            :class:`~segcvae.engine.memory.MemoryLimitError` (a ConfigError) when the hypotheses
            would not fit in memory, naming ``hypotheses`` (or ``eval.hypotheses``).
        segcvae.data.DataError: The data is missing, or has another number of classes.
    """
    from segcvae.data import DataError, build_transforms
    from segcvae.engine.batches import eval_loader, open_dataset
    from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from segcvae.engine.distributed import resolve_device
    from segcvae.engine.eval_loop import check_eval_memory, eval_settings
    from segcvae.engine.eval_loop import evaluate as run_evaluation
    from segcvae.models import family_of

    name = "" if isinstance(checkpoint, dict) else str(checkpoint)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model, cfg = model_from_checkpoint(ckpt, "cpu", list(overrides))
    if not hasattr(device, "type"):
        device = resolve_device(
            device or cfg.train.device, key="device" if device else "train.device"
        )
    model.to(device)
    meta = ckpt["meta"]
    transform = build_transforms(
        cfg.data, split, omission=omission, omission_seed=cfg.eval.omission_seed
    )
    dataset = open_dataset(cfg.data, split, transform)
    if int(dataset.num_classes) != int(meta["num_classes"]):
        raise DataError(
            f"{name or 'the checkpoint'} was trained with {meta['num_classes']} classes, the "
            f"{split} data has {dataset.num_classes}"
        )
    settings = eval_settings(
        cfg.eval,
        split=split,
        samples=samples,
        hypotheses=hypotheses,
        batch_size=batch_size,
        omission=omission,
        max_images=max_images,
        num_vis=None if keep_vis else 0,
    )
    # before the first batch (images are resized to data.image_size), named as the caller gave it
    names = {} if hypotheses is None else {"hypotheses": "hypotheses"}
    size = int(cfg.data.image_size)
    check_eval_memory(settings, int(meta["num_classes"]), size, size, device, names)
    loader = eval_loader(dataset, settings.batch_size, cfg.data.num_workers)
    result = run_evaluation(
        model,
        loader,
        int(meta["num_classes"]),
        settings,
        ignore_index=cfg.data.ignore_index,
        seed=cfg.train.seed,
        progress=progress,
    )
    return EvaluationReport(
        checkpoint=name,
        step=int(ckpt["step"]),
        arch=cfg.model.arch,
        model=family_of(cfg).describe(cfg),
        nll_estimator=model.likelihood_methods[0] if settings.samples > 0 else None,
        dataset=cfg.data.name,
        split=split,
        omission=bool(omission),
        samples=settings.samples,
        hypotheses=settings.hypotheses,
        metrics=result.metrics,
        class_names=list(meta["class_names"]),
        per_image=result.per_image,
        vis=result.vis,
        config=cfg,
        palette=[list(c) for c in meta["palette"]],
    )
