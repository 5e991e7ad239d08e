"""The CPU memory plan: every bucket shares one arena sized by the largest bucket's peak.

`Segmenter("camvid", max_batch=4, batch_invariant=False)` plans buckets 1, 2 and 4. Their
planned calls never overlap, so one arena (alloc_counter.cpp) holds them all: the plan is at
most 1.5x the most bytes alive in one planned call, where per-bucket blocks used to add up
to ~700 MB. Calls on every bucket in any order still take no new memory, and their labels
are those of a fresh engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import ifa_rt

SHAPE = (360, 480)
OPTIONS = dict(
    precision="fp32", runtime="jit", shapes=[SHAPE], max_batch=4, batch_invariant=False, threads=2
)


@pytest.fixture(scope="module")
def frames(real_image) -> np.ndarray:
    return np.stack([real_image(i) for i in range(4)])  # CamVid val is 360x480


@pytest.fixture(scope="module")
def fresh_labels(frames) -> dict[int, np.ndarray]:
    """Labels of each batch size from the first calls of a fresh engine."""
    seg = ifa_rt.Segmenter("camvid", **OPTIONS)
    return {n: seg(frames[:n]) for n in (4, 3, 2, 1)}


def test_one_arena_for_every_bucket_and_no_allocation_in_any_order(frames, fresh_labels):
    seg = ifa_rt.Segmenter("camvid", **OPTIONS)
    plan = seg.plan
    assert plan["buckets"] == [(1, *SHAPE), (2, *SHAPE), (4, *SHAPE)]
    arena, peak = plan["arena"], plan["arena"]["peak_live_bytes"]
    # The peak is batch 4's: at least its float32 logits at full size (11 classes).
    assert peak >= 4 * 11 * SHAPE[0] * SHAPE[1] * 4, arena
    assert plan["total_bytes"] <= 1.5 * peak, (plan["total_bytes"], arena)
    in_buffers = [b["bytes"] for b in plan["buffers"] if b["name"].startswith("arena")]
    assert in_buffers == [arena["bytes"]]

    # Batch sizes 1..4 mixed (3 = 2 + 1 runs), smaller buckets after larger ones and back.
    sequence = [1, 4, 2, 3, 4, 1, 1, 3, 2, 4, 2, 1]
    for n in sequence:
        np.testing.assert_array_equal(seg(frames[:n]), fresh_labels[n], err_msg=f"batch {n}")
    stats = seg.stats()
    assert stats["bucket_runs"] == sum({1: 1, 2: 1, 3: 2, 4: 1}[n] for n in sequence)
    assert stats["fallback_calls"] == 0
    assert stats["allocations_after_warmup"] == 0, stats
    assert stats["bytes_allocated_after_warmup"] == 0, stats
    assert stats["cached_allocations_after_warmup"] > 0  # the calls were counted
    assert stats["arena_bytes"] == arena["bytes"]
    assert stats["arena_peak_live_bytes"] == peak
