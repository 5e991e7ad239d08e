"""Allocation counters under concurrency: each engine counts only its own planned calls.

The counting allocator files an allocation under an engine only when that engine's planned
call made it, or one of that call's intra-op workers did (inside a parallel region, while no
other call runs). Unplanned calls keep their blocks to themselves, and what cannot be owned
(several calls at once, the host's own threads) is reported as
`unattributed_allocations_in_calls` instead of landing in some engine's cache.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import ifa_rt

SIZE = (72, 96)


def _frames(real_image, n: int) -> list[np.ndarray]:
    return [real_image(i, SIZE) for i in range(n)]


def test_pool_engines_count_nothing_after_warmup_under_mixed_concurrent_calls(real_image):
    pool = ifa_rt.SegmenterPool(
        "camvid", size=2, precision="fp32", runtime="jit", shapes=[SIZE], threads=2, learn_shapes=0
    )
    planned = _frames(real_image, 4)
    unplanned = [real_image(i, (64 + 8 * i, 80)) for i in range(4)]
    reference = [pool.segment(im) for im in planned]

    def call(k: int) -> None:
        # Planned and unplanned calls at once on both engines: varying-size blocks of the
        # unplanned ones must not land in a planned call's cache.
        pool.segment(unplanned[k % 4] if k % 3 == 0 else planned[k % 4])

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(call, range(48)))
    # Planned calls after all that still find every block in their engine's cache.
    for im, want in zip(planned, reference, strict=True):
        np.testing.assert_array_equal(pool.segment(im), want)
    stats = pool.stats()
    assert sum(s["bucket_runs"] for s in stats) >= 32  # both engines ran planned calls
    assert sum(s["fallback_calls"] for s in stats) >= 16
    for s in stats:
        assert s["allocations_after_warmup"] == 0, s


def test_the_host_threads_allocations_are_not_filed_under_an_engine(real_image):
    seg = ifa_rt.Segmenter(
        "camvid", precision="fp32", runtime="jit", shapes=[SIZE], threads=2, learn_shapes=0
    )
    frames = _frames(real_image, 2)
    seg(frames[0])
    before = seg.stats()["unattributed_allocations_in_calls"]
    stop = threading.Event()

    def host_work() -> None:
        # The host's own thread, outside any engine call: sizes the engine never uses.
        k = 0
        while not stop.is_set():
            torch.empty(1000 + (k % 50) * 4096, dtype=torch.uint8).fill_(1)
            k += 1

    worker = threading.Thread(target=host_work)
    worker.start()
    try:
        for _ in range(40):
            seg(frames[1])
    finally:
        stop.set()
        worker.join()
    stats = seg.stats()
    assert stats["bucket_runs"] >= 41
    assert stats["allocations_after_warmup"] == 0, stats
    # The host's allocations made while a call ran are counted apart (some fell inside one).
    assert stats["unattributed_allocations_in_calls"] > before
