"""The accuracy gate of a reduced precision: its labels against fp32's on held-out images.

One report for every precision (int8 packages, bf16/fp16 engines): the fraction of pixels
whose label equals fp32's, the mIoU of both against ground truth where labels are given, and
per-class IoU; `passed` when the agreement and the mIoU drop are within `Gate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import ConfusionMatrix

__all__ = ["Gate", "compare", "describe"]

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Gate:
    """What a reduced-precision model must reach on held-out images to be used."""

    min_label_agreement: float = 0.99  # fraction of pixels whose label equals fp32's
    max_miou_drop: float = 0.01  # mIoU(fp32) - mIoU(reduced), on labelled images


def compare(
    name: str,
    fp32: Predict,
    reduced: Predict,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    classes: Sequence[str],
    gate: Gate,
    ignore_index: int = 255,
) -> dict[str, Any]:
    """The gate report of `reduced` (precision `name`) against `fp32` on `images`."""
    same = total = 0
    cms = {k: ConfusionMatrix(len(classes), ignore_index) for k in ("fp32", name)}
    for k, image in enumerate(images):
        want, got = fp32(image), reduced(image)
        same += int((got == want).sum())
        total += want.size
        if labels is not None:
            cms["fp32"].update(want, labels[k])
            cms[name].update(got, labels[k])
    report: dict[str, Any] = {
        "precision": name,
        "images": len(images),
        "label_agreement": same / total,
        "min_label_agreement": gate.min_label_agreement,
        "max_miou_drop": gate.max_miou_drop,
    }
    passed = report["label_agreement"] >= gate.min_label_agreement
    if labels is not None:
        summaries = {k: cm.summary(list(classes)) for k, cm in cms.items()}
        report["miou_fp32"] = summaries["fp32"]["miou"]
        report[f"miou_{name}"] = summaries[name]["miou"]
        report["miou_drop"] = report["miou_fp32"] - report[f"miou_{name}"]
        report["per_class_iou"] = {k: s["per_class_iou"] for k, s in summaries.items()}
        passed = passed and report["miou_drop"] <= gate.max_miou_drop
    report["passed"] = bool(passed)
    return report


def describe(report: dict[str, Any]) -> str:
    """One line: agreement and mIoU against their thresholds."""
    name = report["precision"]
    text = (
        f"label agreement {report['label_agreement']:.4f} "
        f"(needs >= {report['min_label_agreement']})"
    )
    if "miou_drop" in report:
        text += (
            f", mIoU {report['miou_fp32']:.4f} -> {report[f'miou_{name}']:.4f} "
            f"(drop {report['miou_drop']:.4f}, allowed {report['max_miou_drop']})"
        )
    return text + f" on {report['images']} images"
