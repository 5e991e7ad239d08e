"""Evaluation: mIoU / per-class IoU / pixel accuracy (the confusion matrix lives in
`ifa_rt.metrics`, re-exported here), whole-image and sliding-window inference (docs/model.md
§1: 769 window, 513 stride, softmax averaged), for a PyTorch model, a checkpoint, or any
predictor callable `image HxWx3 uint8 -> labels HxW` (e.g. the C++ runtime's
`ifa_rt.Segmenter(path)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .data import IGNORE_INDEX, normalize
from .metrics import ConfusionMatrix

__all__ = [
    "ConfusionMatrix",
    "predict_logits",
    "sliding_logits",
    "model_predictor",
    "segmenter_predictor",
    "evaluate",
    "load_model",
]

Predictor = Callable[[np.ndarray], np.ndarray]


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of a model that may return (logits, aux) in training mode."""
    out = model(x)
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Whole-image logits [B,C,H,W] of normalised input [B,3,H,W]."""
    return _forward(model, x)


def _origins(size: int, win: int, stride: int) -> list[int]:
    """Window starts along one axis; the last is pinned to the far edge."""
    n = max(1, math.ceil((size - win) / stride) + 1)
    return sorted({min(i * stride, size - win) for i in range(n)})


def _average_windows(
    h: int,
    w: int,
    window: int,
    stride: int,
    window_probs: Callable[[int, int, int, int], torch.Tensor],
) -> torch.Tensor:
    """Softmax probabilities [B,C,H,W] averaged over overlapping windows.

    1. Windows are clipped to the image, so a window ≥ the image is one whole-image pass.
    2. Window origins step by `stride`; the last one is pinned to the far edge (full cover).
    3. Each window's softmax (`window_probs(y, x, wh, ww)`, [B,C,wh,ww]) is added into the
       canvas; the canvas is divided by the count.
    """
    if stride <= 0 or window <= 0:
        raise ValueError(f"sliding_logits: expected window and stride > 0, got {window}, {stride}")
    wh, ww = min(window, h), min(window, w)
    probs: torch.Tensor | None = None
    count: torch.Tensor | None = None
    for y in _origins(h, wh, stride):
        for x0 in _origins(w, ww, stride):
            p = window_probs(y, x0, wh, ww)
            if probs is None:
                probs = torch.zeros(p.shape[0], p.shape[1], h, w, device=p.device)
                count = torch.zeros(1, 1, h, w, device=p.device)
            probs[:, :, y : y + wh, x0 : x0 + ww] += p
            count[:, :, y : y + wh, x0 : x0 + ww] += 1
    assert probs is not None and count is not None
    return probs / count


@torch.no_grad()
def sliding_logits(
    model: torch.nn.Module, x: torch.Tensor, window: int = 769, stride: int = 513
) -> torch.Tensor:
    """Softmax probabilities [B,C,H,W] of a PyTorch model averaged over overlapping windows."""
    return _average_windows(
        x.shape[2],
        x.shape[3],
        window,
        stride,
        lambda y, x0, wh, ww: _forward(model, x[:, :, y : y + wh, x0 : x0 + ww]).float().softmax(1),
    )


def segmenter_predictor(
    segmenter: Any, mode: str = "whole", window: int = 769, stride: int = 513
) -> Predictor:
    """Wrap an `ifa_rt.Segmenter` (the C++ runtime) as a predictor, whole-image or sliding."""
    if mode not in ("whole", "slide"):
        raise ValueError(f"segmenter_predictor: 'mode': expected 'whole' or 'slide', got {mode!r}")
    if mode == "whole":
        return segmenter

    def window_probs(image: np.ndarray, y: int, x0: int, wh: int, ww: int) -> torch.Tensor:
        logits = segmenter.logits(image[y : y + wh, x0 : x0 + ww])  # [C,wh,ww] from the runtime
        return torch.from_numpy(logits)[None].softmax(1)

    def predict(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        probs = _average_windows(h, w, window, stride, lambda *box: window_probs(image, *box))
        return probs[0].argmax(0).to(torch.uint8).numpy()

    return predict


def model_predictor(
    model: torch.nn.Module,
    device: str = "cpu",
    mode: str = "whole",
    window: int = 769,
    stride: int = 513,
) -> Predictor:
    """Wrap a PyTorch model as a predictor `image HxWx3 uint8 -> labels HxW uint8`."""
    if mode not in ("whole", "slide"):
        raise ValueError(f"model_predictor: 'mode': expected 'whole' or 'slide', got {mode!r}")
    model = model.to(device).eval()

    def predict(image: np.ndarray) -> np.ndarray:
        """RGB uint8 HxWx3 -> labels uint8 HxW."""
        x = normalize(image)[None].to(device)
        out = (
            predict_logits(model, x)
            if mode == "whole"
            else sliding_logits(model, x, window, stride)
        )
        return out.argmax(1)[0].to(torch.uint8).cpu().numpy()

    return predict


def evaluate(
    predictor: Predictor,
    dataset,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    limit: int | None = None,
    progress: bool = False,
) -> ConfusionMatrix:
    """Run `predictor` on each raw (image, label) pair of `dataset`; return the confusion matrix."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = range(n)
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="eval", unit="img")
    for i in items:
        image, label = dataset.read(i) if hasattr(dataset, "read") else dataset[i]
        pred = np.asarray(predictor(image))
        if pred.shape != label.shape:
            raise ValueError(
                f"evaluate: predictor output for item {i}: expected shape "
                f"{label.shape}, got {pred.shape}"
            )
        cm.update(pred, label)
    return cm


def load_model(path: str, device: str = "cpu") -> torch.nn.Module:
    """Load a project (or reference) checkpoint as an eval-mode model on `device`."""
    from .deploy.checkpoint import load_checkpoint

    return load_checkpoint(path).to(device).eval()
