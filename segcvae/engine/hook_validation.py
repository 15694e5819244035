"""The evaluation hook: validate with ``cfg.eval``, log the record, draw the sample grid, warn
about a latent the model does not use or classes that are never scored."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from segcvae.config import Config
from segcvae.engine.eval_loop import evaluate
from segcvae.engine.eval_report import save_sample_grid
from segcvae.engine.logger import RunLogger

log = logging.getLogger("segcvae")

# KL below this many nats per image after an evaluation: the latent carries next to nothing.
MIN_KL_PER_IMAGE = 0.1


class ValidationHook:
    """Evaluate on the validation split (``cfg.eval`` whole, :func:`evaluate`) and record it.

    Args:
        cfg: The experiment.
        loader: The validation batches (``eval.split``).
        meta: The training data's ``{"num_classes", "class_names", "palette"}``.
        logger: Where the records go (``metrics.jsonl``).
        run_dir: The run folder (``samples/step_*.png``).
        model_name: What the grid's title calls the model (its family's ``describe``).
    """

    def __init__(
        self,
        cfg: Config,
        loader: DataLoader,
        meta: dict[str, Any],
        logger: RunLogger,
        run_dir: str | Path,
        model_name: str,
    ) -> None:
        self.cfg = cfg
        self.loader = loader
        self.meta = meta
        self.logger = logger
        self.run_dir = Path(run_dir)
        self.model_name = model_name
        self._warned_unscored = False

    def __call__(
        self, model: nn.Module, step: int, record: dict[str, Any], bar: Any = None
    ) -> dict[str, Any]:
        """Evaluate ``model`` at ``step``; write ``record`` (the trainer's step, lr, training means)
        with the validation metrics added as ``val``. Returns the metrics."""
        ev = self.cfg.eval
        result = evaluate(
            model,
            self.loader,
            self.meta["num_classes"],
            ev,
            ignore_index=self.cfg.data.ignore_index,
            seed=self.cfg.train.seed,
        )
        val = result.metrics
        self.logger.log({**record, "val": val})
        if result.vis is not None:
            save_sample_grid(
                result.vis,
                self.run_dir / "samples" / f"step_{step:07d}.png",
                self.meta["palette"],
                self.cfg.data.mean,
                self.cfg.data.std,
                title=f"{self.model_name} step {step}: {ev.split} mean IoU {val['mean_iou']:.3f}",
            )
        shown = " ".join(
            f"{k} {val[k]:.4f}"
            for k in ("mean_iou", "pixel_accuracy", "nll", "ged", "hm_iou")
            if k in val
        )
        train_loss = record["train"].get("loss", float("nan"))
        message = f"step {step}: train loss {train_loss:.4f} | {ev.split} {shown}"
        if bar is None or bar.disable:
            log.info(message)
        else:
            bar.write(message)
        warn_if_latent_unused(self.cfg, step, record["train"], val)
        if not self._warned_unscored:
            self._warned_unscored = warn_unscored_classes(val, self.meta["class_names"], ev.split)
        return val


def warn_if_latent_unused(
    cfg: Config, step: int, train_means: dict[str, float], val: dict[str, Any]
) -> None:
    """Warn when KL(q || p) per image is below :data:`MIN_KL_PER_IMAGE`: the hypotheses barely
    differ and the model behaves like the CNN."""
    kl = train_means.get("kl_per_image")
    if kl is None or not math.isfinite(kl) or kl >= MIN_KL_PER_IMAGE:
        return
    lc = cfg.loss
    diversity = val.get("diversity")
    seen = (
        f"; the hypotheses agree (mean pairwise IoU {diversity:.3f})"
        if isinstance(diversity, float)
        else ""
    )
    log.warning(
        "step %d: KL(q || p) is %.3g nats per image (< %g): the latent is unused%s, so the "
        "model behaves like a CNN. Try a longer loss.kl_warmup_steps (now %d), loss.free_bits "
        "> 0 (now %g), or a higher loss.alpha (now %g: more CVAE, less GSNN).",
        step,
        kl,
        MIN_KL_PER_IMAGE,
        seen,
        lc.kl_warmup_steps,
        lc.free_bits,
        lc.alpha,
    )


def warn_unscored_classes(metrics: dict[str, Any], class_names: list[str], split: str) -> bool:
    """Warn when a class has no IoU (in neither targets nor predictions); returns whether it did."""
    per_class = metrics.get("per_class_iou") or []
    missing = [
        str(name)
        for name, v in zip(class_names, per_class, strict=False)
        if not isinstance(v, float) or math.isnan(v)
    ]
    if not missing:
        return False
    log.warning(
        "%s: class %s occurs in neither the targets nor the predictions; its IoU is null and "
        "mean_iou is over the other %d class(es) only",
        split,
        ", ".join(missing),
        len(per_class) - len(missing),
    )
    return True
