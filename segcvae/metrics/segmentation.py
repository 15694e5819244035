"""Pixel accuracy and IoU accumulated over a dataset, counted by ``segmentation_models_pytorch``."""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import Tensor


class SegmentationMeter:
    """Accumulates per-class true/false positive counts over batches.

    IoU per class is computed on the dataset totals (not averaged per image); a class that never
    occurs in prediction or target has IoU NaN (null in JSON), never 1, and is left out of the mean;
    a class that never occurs in the targets but is predicted somewhere has IoU 0 (its pixels are
    all false positives) and counts in the mean.
    With no scored class (or no labelled pixel) the mean IoU (pixel accuracy) is NaN, not perfect.
    ``ignore_index`` pixels are counted in ``ignored_fraction`` and nowhere else.

    Args:
        num_classes: K.
        ignore_index: Target value excluded from every count.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.tp = torch.zeros(self.num_classes, dtype=torch.long)
        self.fp = torch.zeros(self.num_classes, dtype=torch.long)
        self.fn = torch.zeros(self.num_classes, dtype=torch.long)
        self.ignored = 0
        self.pixels = 0

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Count one batch.

        Args:
            pred: Predicted labels (B, H, W) long.
            target: True labels (B, H, W) long; ``ignore_index`` pixels are skipped.
        """
        tp, fp, fn, _ = smp.metrics.get_stats(
            pred.long().cpu(),
            target.long().cpu(),
            mode="multiclass",
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
        )  # each (B, K)
        self.tp += tp.sum(0)
        self.fp += fp.sum(0)
        self.fn += fn.sum(0)
        self.ignored += int((target == self.ignore_index).sum())
        self.pixels += target.numel()

    def compute(self) -> dict[str, float | list[float]]:
        """Return ``pixel_accuracy``, ``mean_iou``, ``per_class_iou`` (list of K; NaN for a class
        seen in neither prediction nor target, 0 for one predicted but never in the target) and
        ``ignored_fraction``."""
        tp, fp, fn = (t.unsqueeze(0) for t in (self.tp, self.fp, self.fn))
        iou = smp.metrics.iou_score(tp, fp, fn, torch.zeros_like(tp), zero_division=float("nan"))
        iou = iou[0].double()
        labelled = (self.tp + self.fn).sum().item()
        return {
            "pixel_accuracy": self.tp.sum().item() / labelled if labelled else float("nan"),
            "mean_iou": float(torch.nanmean(iou)) if not torch.isnan(iou).all() else float("nan"),
            "per_class_iou": iou.tolist(),
            "ignored_fraction": self.ignored / self.pixels if self.pixels else float("nan"),
        }
