"""`ifa-rt bench`: latency of one artifact through `Segmenter`, and the statistics shared with
the full interleaved benchmark of every runtime (docs/benchmarks.md), which is a script of the
source checkout that imports this module (`python scripts/bench/run.py --model camvid ...`).

    ifa-rt bench camvid --shape 360x480 --batch 1 --reps 30
    ifa-rt bench cityscapes-r50 --shape 512x1024          # a preset: random weights, exported
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .shapes import parse_shape

__all__ = [
    "bench_artifact",
    "data_root",
    "load_images",
    "parse_shape",
    "percentile",
    "summarize",
    "time_calls",
]

DEMO_IMAGE = Path("cityscapes_sample") / "demo_frankfurt_1024x512.png"
CAMVID_VAL = Path("camvid") / "images" / "val"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, the rule `ifa-rt-bench` uses: sorted[round(q·(n−1))]."""
    ordered = sorted(values)
    return float(ordered[int(q * (len(ordered) - 1) + 0.5)])


def summarize(ms: Sequence[float], batch: int) -> dict[str, Any]:
    """p50/p90/p99/mean/min/max (ms) and images/s at the median, for one variant's call times."""
    if not ms:
        raise ValueError("summarize: 'ms': expected at least one timing, got none")
    p50 = percentile(ms, 0.5)
    return {
        "reps": len(ms),
        "p50_ms": p50,
        "p90_ms": percentile(ms, 0.9),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": float(np.mean(ms)),
        "min_ms": float(min(ms)),
        "max_ms": float(max(ms)),
        "images_per_s": 1000.0 * batch / p50,
    }


def data_root() -> Path:
    """The real-data folder: $IFA_RT_DATA, else the platform data folder (`ifa_rt.data`)."""
    from .data.folders import default_data_root

    return default_data_root()


def _image_files(root: Path) -> list[Path]:
    files = [root / DEMO_IMAGE] if (root / DEMO_IMAGE).is_file() else []
    if (root / CAMVID_VAL).is_dir():
        files += sorted((root / CAMVID_VAL).glob("*.*"))
    return files


def load_images(
    shape: tuple[int, int], batch: int, root: Path | None = None
) -> tuple[np.ndarray, str]:
    """`batch` real images resized to `shape` as uint8 [B,H,W,3], and where they came from.

    Cityscapes' Frankfurt demo frame first, then CamVid val images. FileNotFoundError naming
    the folder and how to set it when there are none: random pixels would time another
    workload (finishing the labels visits every class only near class boundaries, and random
    pixels make boundaries everywhere).
    """
    from .data.folders import DATA_ENV, require_data_root

    folder = require_data_root(root, "bench")
    files = _image_files(folder)
    if not files:
        raise FileNotFoundError(
            f"bench: expected real images in '{folder}' ({DEMO_IMAGE} or {CAMVID_VAL}/*), "
            f"found none; set {DATA_ENV}=/path/to/data (the folder holding camvid/ or "
            "cityscapes_sample/)"
        )
    height, width = shape
    from PIL import Image

    out = np.empty((batch, height, width, 3), np.uint8)
    for i in range(batch):
        with Image.open(files[i % len(files)]) as img:
            out[i] = np.asarray(img.convert("RGB").resize((width, height), Image.BILINEAR))
    names = sorted({f.parent.name for f in files[:batch]})
    return out, "real: " + ", ".join(names)


def time_calls(fn, images: Any, reps: int, *, sync=None, warmup: int = 0) -> list[float]:
    """Call `fn(images)` warmup + reps times; the reps wall times in ms (`sync` before stopping)."""
    ms = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        fn(images)
        if sync is not None:
            sync()
        if i >= warmup:
            ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def bench_artifact(model: str, workdir: Path) -> tuple[str, str]:
    """An artifact path for a path / bundled name, or a freshly exported preset (random weights)."""
    from .model import build_model, presets

    if model not in presets():
        from .bundled import resolve

        return str(resolve(model, "bench")), "artifact"
    import torch

    from .deploy.export import export

    torch.manual_seed(0)
    net = build_model(model, pretrained_backbone=False).eval()
    path = workdir / f"{model}.ifa.pt"
    export(net, path, preset=model)
    return str(path), "preset (random weights)"
