"""The reliability contracts on the real bundled model, not only on the 3-conv stand-in.

`Segmenter("camvid")` is IFA with the fused head, whose per-shape geometry cache (planned
sizes pinned, an LRU of the others) is shared by every call: threads x calls on one engine
and on a pool, concurrent `submit()`, unplanned sizes evicting each other while other threads
use them, and a soak over 100 distinct sizes whose RSS must stay flat. Results are compared
bitwise with the same calls run serially; every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from _reliability import run_threads
from ifa_rt import Segmenter, SegmenterPool
from ifa_rt.runtime.batcher import runner_batcher

pytestmark = pytest.mark.slow

SHAPE = (64, 96)
ODD_SIZES = [(72, 100), (50, 130), (96, 64), (81, 77)]  # unplanned; more than shape_cache
THREADS = 4
CALLS = 30
DEADLINE_S = 240.0


@pytest.fixture(scope="module")
def mix(real_image):
    """The call mix on real CamVid frames: (kind, input) for i in 0..9."""
    batch = np.stack([real_image(i, SHAPE) for i in range(4)])
    odd = [real_image(4 + i, size) for i, size in enumerate(ODD_SIZES)]
    calls = []
    for k in range(10):
        if k == 9:
            calls.append(("bad", batch.astype(np.float32)))
        elif k in (2, 5, 8):
            calls.append(("segment", odd[k % 4]))
        elif k == 4:
            calls.append(("list", [batch[0], odd[1], batch[2], odd[3]]))
        elif k == 7:
            calls.append(("logits", batch[1]))
        else:
            calls.append(("segment", batch[: 1 + k % 4]))
    return calls


def _call(runner, kind: str, x):
    return runner.logits(x) if kind == "logits" else runner(x)


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def _hammer(runner, mix) -> dict[str, int]:
    serial = {i: _call(runner, *mix[i]) for i in range(10) if mix[i][0] != "bad"}
    counts = {"ok": 0, "mismatch": 0, "rejected": 0, "unexpected": 0}
    lock = threading.Lock()

    def worker(t: int) -> None:
        for c in range(CALLS):
            i = (3 * t + c) % 10
            kind, x = mix[i]
            try:
                got = _call(runner, kind, x)
                outcome = "ok" if kind != "bad" and _same(got, serial[i]) else "mismatch"
            except ValueError:
                outcome = "rejected" if kind == "bad" else "unexpected"
            except Exception:  # noqa: BLE001 - counted and asserted zero
                outcome = "unexpected"
            with lock:
                counts[outcome] += 1

    run_threads(worker, THREADS, DEADLINE_S)
    return counts


def _expected() -> dict[str, int]:
    bad = sum((3 * t + c) % 10 == 9 for t in range(THREADS) for c in range(CALLS))
    return {"ok": THREADS * CALLS - bad, "mismatch": 0, "rejected": bad, "unexpected": 0}


def test_threads_share_the_real_model(mix):
    # shape_cache=2 < 4 unplanned sizes: threads evict geometry other threads are using.
    seg = Segmenter(
        "camvid", precision="fp32", shapes=[SHAPE], max_batch=2, threads=1, shape_cache=2
    )
    assert _hammer(seg, mix) == _expected()
    assert seg.stats()["shape_cache"] == 2
    assert _same(seg(mix[0][1]), _call(seg, *mix[0]))  # and it still serves


def test_threads_share_a_pool_of_the_real_model(mix):
    pool = SegmenterPool("camvid", size=2, shapes=[SHAPE], max_batch=2, threads=1)
    assert _hammer(pool, mix) == _expected()
    assert all(s["calls"] > 0 for s in pool.stats())


def test_concurrent_submit_on_the_real_model(mix):
    seg = Segmenter(
        "camvid", precision="fp32", shapes=[SHAPE], max_batch=4, threads=1, max_delay_us=2000
    )
    images = [mix[0][1][0], mix[1][1][1], mix[2][1], mix[5][1], mix[3][1][2]]
    want = [seg(im) for im in images]
    mismatches = []

    def worker(t: int) -> None:
        futures = [(k, seg.submit(images[k])) for k in range(len(images)) for _ in range(3)]
        for k, future in futures:
            if not np.array_equal(future.result(DEADLINE_S), want[k]):
                mismatches.append((t, k))

    run_threads(worker, THREADS, DEADLINE_S)
    assert mismatches == []
    assert runner_batcher(seg).stats()["completed"] == THREADS * 15


def test_soak_over_100_sizes_keeps_memory_flat(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", script)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    out = tmp_path / "soak.json"
    # 800 calls: 120 on 100 distinct unplanned sizes; the RSS baseline is taken halfway.
    argv = ["--calls", "800", "--sizes", "100", "--warmup-fraction", "0.5", "--threads", "1"]
    assert soak.main([*argv, "--max-growth-mib", "64", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["artifact"] == "camvid" and result["unplanned_sizes"] == 100
    assert result["unplanned_calls"] >= 100 and result["shape_cache"] == 4
    assert result["errors"] == 0 and result["result_mismatches"] == 0
    assert result["rss_growth_mib"] <= 64  # measured +18..+38; unbounded caches: +1000
