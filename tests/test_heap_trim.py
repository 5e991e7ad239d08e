"""Many unplanned sizes keep resident memory bounded: free heap memory goes back to the
system once growth passes `trim_heap_mb` (glibc keeps the unplanned path's multi-MB
temporaries otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ifa_rt


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _segmenter(**kwargs) -> ifa_rt.Segmenter:
    return ifa_rt.Segmenter(
        "camvid", precision="fp32", runtime="jit", shapes=[(360, 480)], threads=2, **kwargs
    )


def _serve_distinct_sizes(seg: ifa_rt.Segmenter, real_image, count: int) -> list[float]:
    """RSS after each of `count` calls, every call a new size of 0.2-0.35 MP."""
    rss = []
    for i in range(count):
        seg(real_image(i % 5, (400 + 4 * i, 560 + 8 * (i % 7))))
        rss.append(_rss_mb())
    return rss


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc/self/statm")
def test_growth_past_the_budget_is_returned(real_image):
    seg = _segmenter(learn_shapes=0, trim_heap_mb=32)
    rss = _serve_distinct_sizes(seg, real_image, 24)
    stats = seg.stats()
    assert stats["fallback_calls"] == 24 and stats["heap_trims"] > 0
    # After warm-up, 20 more sizes add under 120 MB (measured: ~63 MB, what a trim cannot
    # return; untrimmed the same run grew by ~310 MB).
    assert max(rss[4:]) - rss[4] < 120, rss


def test_no_trim_when_off_or_when_planned(real_image):
    off = _segmenter(learn_shapes=0, trim_heap_mb=0)
    _serve_distinct_sizes(off, real_image, 6)
    assert off.stats()["heap_trims"] == 0
    planned = _segmenter(trim_heap_mb=1)
    for i in range(6):
        planned(real_image(i))
    assert planned.stats()["heap_trims"] == 0  # planned runs never allocate, never trim
    assert ifa_rt.Segmenter("camvid", precision="fp32", runtime="jit").options.trim_heap_mb == 384
