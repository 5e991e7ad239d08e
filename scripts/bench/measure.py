"""The interleaved measurement of one cell (input shape × batch) and its per-variant records.

Algorithm of `measure_cell`:
  1. Warm-up, excluded from the statistics: each runner's first call is timed on its own
     (`first_call_ms`: lazy compilation, planning, oneDNN primitive creation), then it gets
     `warmup - 1` more untimed calls. A runner whose call raises leaves the cell, recorded.
  2. `reps` rounds. Round r calls every runner once, starting at runner r mod n: the order
     rotates, so no variant always runs right after the same neighbour (whose cache and
     frequency state it would inherit) and slow drifts of the shared machine hit all alike.
  3. The labels of each runner's last timed call are kept, to compare with the eager labels.
Statistics are `ifa_rt.bench.summarize` (nearest-rank p50/p90/p99, as `ifa-rt-bench`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ifa_rt.bench import summarize

__all__ = ["Timing", "agreement", "cell_records", "measure_cell"]


@dataclass
class Timing:
    """One variant's measurements in one cell."""

    first_call_ms: float
    ms: list[float]
    labels: np.ndarray


def _timed(runner: Callable[[np.ndarray], np.ndarray], images: np.ndarray):
    """(ms, labels) of one call."""
    t0 = time.perf_counter()
    labels = runner(images)
    return (time.perf_counter() - t0) * 1e3, labels


def measure_cell(
    runners: dict[str, Callable],
    images: np.ndarray,
    reps: int,
    warmup: int,
    tick: Callable[[], None] | None = None,
) -> tuple[dict[str, Timing], dict[str, str]]:
    """Interleaved timings of every runner on `images`; (timings, errors by variant).

    `tick` is called after every timed call (a progress bar).
    """
    if reps < 1 or warmup < 1:
        raise ValueError(f"measure_cell: 'reps'/'warmup': expected >= 1, got {reps}/{warmup}")
    out: dict[str, Timing] = {}
    errors: dict[str, str] = {}
    for name, runner in runners.items():
        try:
            first_ms, labels = _timed(runner, images)
            for _ in range(warmup - 1):
                runner(images)
        except Exception as exc:  # one broken variant must not end a long run; it is recorded
            errors[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500]}"
            continue
        out[name] = Timing(first_ms, [], labels)
    names = list(out)
    for r in range(reps):
        k = r % max(len(names), 1)
        for name in names[k:] + names[:k]:
            ms, out[name].labels = _timed(runners[name], images)
            out[name].ms.append(ms)
            if tick is not None:
                tick()
    return out, errors


def agreement(labels: np.ndarray, reference: np.ndarray) -> float:
    """The fraction of pixels whose label equals the reference's, in [0, 1]."""
    if labels.shape != reference.shape:
        raise ValueError(
            f"agreement: 'labels': expected shape {reference.shape}, got {labels.shape}"
        )
    return float(np.mean(labels == reference))


def cell_records(
    timings: dict[str, Timing],
    failed: dict[str, tuple[str, str]],
    base: dict[str, Any],
    reference: np.ndarray | None,
    comparable: Callable[[str], bool],
    infos: dict[str, dict],
    correctness: dict[str, dict] | None = None,
) -> list[dict]:
    """One JSON record per variant of a cell: statistics, speed-up, label agreement, or why not.

    `base` holds the cell's fields (batch, height, width, weights...); `reference` the eager
    labels; `comparable(variant)` whether that variant runs the eager model's weights;
    `correctness` the per-variant records of correctness.py (logits error, clear-margin labels).
    """
    correctness = correctness or {}
    batch = base["batch"]
    stats = {name: summarize(t.ms, batch) for name, t in timings.items()}
    seg_p50 = stats["segmenter"]["p50_ms"] if "segmenter" in stats else None
    records = []
    for name, t in timings.items():
        rec = {
            "variant": name,
            **base,
            "status": "ok",
            **stats[name],
            "first_call_ms": t.first_call_ms,
            "speedup_vs_segmenter": seg_p50 / stats[name]["p50_ms"] if seg_p50 else None,
            "label_agreement_vs_eager": None,
            "ms": [round(x, 3) for x in t.ms],
            "info": infos.get(name, {}),
        }
        if reference is None:
            rec["label_agreement_note"] = "no eager labels for this cell"
        elif not comparable(name):
            rec["label_agreement_note"] = "runs other weights than the eager model"
        else:
            rec["label_agreement_vs_eager"] = agreement(t.labels, reference)
        if name in correctness:
            rec["correctness"] = correctness[name]
        records.append(rec)
    for name, (status, reason) in failed.items():
        records.append({"variant": name, **base, "status": status, "reason": reason})
    return records
