"""Visualisation: palette colouring, image | overlay panels with a legend, confusion heat-map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .data import IGNORE_INDEX

__all__ = ["colorize", "overlay", "side_by_side", "plot_confusion"]

Palette = Sequence[tuple[int, int, int]]


def colorize(labels: np.ndarray, palette: Palette, ignore_color=(0, 0, 0)) -> np.ndarray:
    """Label map HxW -> RGB uint8 HxWx3; ignore (255) and unknown ids get `ignore_color`."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"colorize: 'labels': expected a 2-D map, got shape {labels.shape}")
    lut = np.tile(np.asarray(ignore_color, np.uint8), (256, 1))
    lut[: len(palette)] = np.asarray(palette, np.uint8)
    return lut[labels.astype(np.uint8)]


def overlay(
    image: np.ndarray, labels: np.ndarray, palette: Palette, alpha: float = 0.5
) -> np.ndarray:
    """Blend the coloured labels over the image (ignored pixels keep the image)."""
    image = np.asarray(image)
    if image.shape[:2] != np.asarray(labels).shape:
        raise ValueError(
            f"overlay: 'labels': expected shape {image.shape[:2]} of the image, "
            f"got {np.asarray(labels).shape}"
        )
    col = colorize(labels, palette).astype(np.float32)
    out = image.astype(np.float32) * (1 - alpha) + col * alpha
    keep = np.asarray(labels) >= len(palette)  # ignore / unknown: show the image
    out[keep] = image[keep]
    return out.round().astype(np.uint8)


def side_by_side(
    image: np.ndarray,
    labels: np.ndarray,
    palette: Palette,
    class_names: Sequence[str],
    alpha: float = 0.5,
    path: str | Path | None = None,
) -> Image.Image:
    """Panel `image | blended labels` with a legend of the classes present; saved if `path`."""
    h, w = image.shape[:2]
    present = [int(c) for c in np.unique(labels) if c < len(class_names) and c != IGNORE_INDEX]
    row_h = 16
    legend_h = row_h * ((len(present) + 3) // 4) + 4
    canvas = Image.new("RGB", (2 * w, h + legend_h), (255, 255, 255))
    canvas.paste(Image.fromarray(np.asarray(image, np.uint8)), (0, 0))
    canvas.paste(Image.fromarray(overlay(image, labels, palette, alpha)), (w, 0))
    draw = ImageDraw.Draw(canvas)
    col_w = max(1, 2 * w // 4)
    for k, c in enumerate(present):
        x, y = (k % 4) * col_w + 4, h + 2 + (k // 4) * row_h
        draw.rectangle([x, y + 2, x + 11, y + 13], fill=tuple(palette[c]), outline=(0, 0, 0))
        draw.text((x + 16, y + 2), class_names[c], fill=(0, 0, 0))
    if path is not None:
        canvas.save(path)
    return canvas


def plot_confusion(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, normalize: bool = True
) -> None:
    """Save a confusion heat-map PNG (rows = ground truth, normalised per row by default)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=np.float64)
    if normalize:
        m = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1 + 0.55 * n, 1 + 0.5 * n))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    for i in range(n):
        for j in range(n):
            if m[i, j] >= 0.01:
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if m[i, j] > 0.5 * m.max() else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
