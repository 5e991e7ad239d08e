"""Helpers of the GPU check's steps: real frames, label agreement, timing, the thread hammer.

Imported by scripts/gpu_check.py and its step modules (gpu_check_latency.py, gpu_check_io.py);
imports none of them, so the check has no import circle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

CAMVID_VAL = Path("camvid") / "images" / "val"
DEMO_FRAME = Path("cityscapes_sample") / "demo_frankfurt_1024x512.png"
# Frames the check reads: scripts/gpu_check.sh --prepare stages this many CamVid frames and
# the Cityscapes demo frame into .gl/data, and its preflight refuses to start with fewer.
CAMVID_FRAMES = 3


def frame_paths(data: Path) -> list[Path]:
    """The real frames under `data`: CamVid val (sorted, at most CAMVID_FRAMES), then the demo."""
    paths = sorted((data / CAMVID_VAL).glob("*.jpg"))[:CAMVID_FRAMES]
    demo = data / DEMO_FRAME
    return paths + ([demo] if demo.is_file() else [])


def load_images(data: Path, shape: tuple[int, int], count: int) -> list[np.ndarray]:
    """`count` real street frames resized to `shape`; fewer found is an error, never a short
    list (an empty list would make every agreement NaN, and NaN never misses a goal)."""
    from PIL import Image

    paths = frame_paths(data)
    if len(paths) < count:
        raise FileNotFoundError(
            f"expected {count} frames under {data} ({CAMVID_VAL}/*.jpg, {DEMO_FRAME}), "
            f"found {len(paths)}: run scripts/gpu_check.sh --prepare and carry .gl"
        )
    h, w = shape
    return [
        np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR))
        for p in paths[:count]
    ]


def agreement(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    """Fraction of equal labels over equally shaped label maps; no maps is an error, not NaN."""
    if not got or len(got) != len(want):
        raise ValueError(
            f"agreement: expected two equal, non-empty lists, got {len(got)} and "
            f"{len(want)} label maps"
        )
    for g, w in zip(got, want, strict=True):
        if np.shape(g) != np.shape(w):
            raise ValueError(f"agreement: label maps of shapes {np.shape(g)} and {np.shape(w)}")
    return float(
        np.mean([np.mean(np.asarray(g) == np.asarray(w)) for g, w in zip(got, want, strict=True)])
    )


def percentiles(ms: list[float]) -> dict:
    """p50/p90/p99 of a latency list in ms, rounded, by the project's one nearest-rank rule."""
    from ifa_rt.bench import percentile

    if not ms:
        raise ValueError("percentiles: no timings")
    return {f"p{round(q * 100)}_ms": round(percentile(ms, q), 2) for q in (0.5, 0.9, 0.99)}


def images_per_s(batch: int, ms: list[float]) -> float:
    """Images per second at the p50 call time (the same nearest-rank p50 as the table)."""
    from ifa_rt.bench import percentile

    return round(batch * 1000.0 / percentile(ms, 0.5), 1)


def time_calls(
    fn: Callable[[], object],
    iters: int,
    sync: Callable[[], None] | None = None,
    budget_s: float | None = None,
) -> list[float]:
    """Wall time (ms) of up to `iters` calls, each followed by `sync` (the device's
    synchronize); stops early, after at least 5 calls, once `budget_s` seconds are spent."""
    out: list[float] = []
    start = time.perf_counter()
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        out.append((time.perf_counter() - t) * 1000.0)
        if budget_s is not None and len(out) >= 5 and time.perf_counter() - start > budget_s:
            break
    return out


def hammer(
    runner: Callable[[np.ndarray], np.ndarray],
    images: list[np.ndarray],
    threads: int = 8,
    calls: int = 20,
) -> list[str]:
    """`threads` threads each make `calls` calls; every problem found: a result unequal to
    the serial one, an exception raised in a worker, or calls that never completed."""
    if not images:
        raise ValueError("hammer: no images")
    want = [runner(im) for im in images]
    problems: list[str] = []
    done = [0] * threads
    lock = threading.Lock()

    def work(k: int) -> None:
        try:
            for i in range(calls):
                j = (i + k) % len(images)
                if not np.array_equal(runner(images[j]), want[j]):
                    with lock:
                        problems.append(f"thread {k} call {i}: other labels than serial")
                done[k] += 1
        except Exception as exc:  # noqa: BLE001 - a worker's error is the step's failure
            with lock:
                problems.append(f"thread {k}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if sum(done) != threads * calls and not problems:
        problems.append(f"{sum(done)} of {threads * calls} calls completed")
    return problems
