"""Segmentation metrics on the ground floor: a streaming confusion matrix and what it gives
(mIoU, per-class IoU, pixel accuracy). Imports nothing of ifa_rt but the data constants, so
both evaluation and the precision gates of `deploy` can use it without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .data import IGNORE_INDEX

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Streaming C×C confusion matrix (rows = ground truth, cols = prediction); ignore skipped."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> None:
        """Add one or more label maps (numpy or torch, same shape)."""
        pred = np.asarray(pred.cpu() if torch.is_tensor(pred) else pred).reshape(-1)
        target = np.asarray(target.cpu() if torch.is_tensor(target) else target).reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(
                f"ConfusionMatrix.update: 'pred': expected {target.size} pixels "
                f"like the target, got {pred.size}"
            )
        keep = target != self.ignore_index
        t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
        c = self.num_classes
        if t.size and (t.max() >= c or p.max() >= c or p.min() < 0 or t.min() < 0):
            raise ValueError(
                f"ConfusionMatrix.update: labels expected in [0, {c}), got "
                f"target max {t.max()}, pred range [{p.min()}, {p.max()}]"
            )
        self.matrix += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both ground truth and prediction."""
        m = self.matrix.astype(np.float64)
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes present in ground truth or prediction."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / labelled pixels."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready metrics: miou, pixel_accuracy, per_class_iou (by name), pixels."""
        names = list(class_names or [str(i) for i in range(self.num_classes)])
        iou = self.iou()
        return {
            "miou": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": {
                n: (None if math.isnan(v) else float(v)) for n, v in zip(names, iou, strict=True)
            },
            "pixels": int(self.matrix.sum()),
        }
