# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Segmenter.submit / ifa_rt.batcher.Batcher: dynamic micro-batching from Python.

Results equal direct calls (the tiny fixture and a real exported IFA on real CamVid images),
batches form under concurrency, max_delay_us bounds the wait, an error reaches only its own
future, close() drains or cancels, and the interpreter exits promptly with requests pending.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import warnings
from concurrent.futures import CancelledError

import numpy as np
import pytest

import ifa_rt
from _reliability import fixture_dir, rand_images
from ifa_rt import Segmenter, SegmenterPool
from ifa_rt.runtime.batcher import Batcher

TIMEOUT = 30  # s: a bound on every wait, so a bug fails a test instead of hanging it


@pytest.fixture(scope="module")
def tiny() -> str:
    return str(fixture_dir() / "tiny.ifa.pt")


@pytest.fixture(scope="module")
def seg(tiny) -> Segmenter:
    return Segmenter(tiny, max_batch=4, shapes=[(32, 48), (37, 53)], threads=1)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return rand_images(8, 32, 48, seed=3)


def test_submit_matches_direct_calls_and_batches_form(tiny, images):
    seg = Segmenter(tiny, max_batch=4, shapes=[(32, 48)], threads=1, max_delay_us=2000)
    direct = [seg(im) for im in images]
    results: dict[tuple[int, int], np.ndarray] = {}

    def caller(t: int) -> None:
        for c in range(12):  # each caller waits on its result, like a request handler
            k = (t + c) % len(images)
            results[t, c] = seg.submit(images[k]).result(TIMEOUT)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT)
    assert len(results) == 96
    for (t, c), labels in results.items():
        np.testing.assert_array_equal(labels, direct[(t + c) % len(images)])
    stats = seg.batcher.stats()
    assert stats["completed"] == 96 and stats["failed"] == 0
    assert stats["batched_requests"] == 96
    assert stats["mean_batch_size"] > 1.5, stats
    assert sum(stats["batch_sizes"]) == stats["batches"]
    assert seg.stats()["fallback_calls"] == 0


def test_real_model_on_camvid_images(tmp_path, real_image):
    path = tmp_path / "mini.ifa.pt"
    model = ifa_rt.build_model("camvid-r18", neck_channels=16, mlp_hidden=(32, 16)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ifa_rt.export(model, path)
    # max_batch 2 keeps the plan's warm-up short on 2 cores.
    seg = Segmenter(path, max_batch=2, shapes=[(64, 96)], max_delay_us=1_000_000)
    ims = [real_image(i, (64, 96)) for i in range(3)]
    futures = [seg.submit(im) for im in ims]  # 2 fill a batch at once, 1 waits for the delay
    for im, f in zip(ims, futures, strict=True):
        labels = f.result(TIMEOUT)
        assert labels.shape == (64, 96) and labels.dtype == np.uint8
        np.testing.assert_array_equal(labels, seg(im))
    assert seg.batcher.stats()["batch_sizes"] == [0, 1, 1]


def test_full_batch_runs_at_once_and_a_lone_request_waits_max_delay(seg, images):
    with Batcher(seg, max_delay_us=2_000_000) as b:
        t0 = time.perf_counter()
        out = b.map(images[:4], timeout=TIMEOUT)
        assert time.perf_counter() - t0 < 1.0  # full: no wait for the 2 s delay
        assert b.stats()["batches"] == 1
        for im, labels in zip(images[:4], out, strict=True):
            np.testing.assert_array_equal(labels, seg(im))
    with Batcher(seg, max_delay_us=150_000) as b:
        t0 = time.perf_counter()
        b.submit(images[0]).result(TIMEOUT)
        waited = time.perf_counter() - t0
        assert 0.15 <= waited < 1.15  # waited for company, about max_delay (loaded machine)
        assert 150_000 <= b.stats()["max_queue_us"] < 1_150_000


def test_sizes_batch_apart_in_order(seg, images):
    odd = rand_images(2, 37, 53, seed=4)
    with Batcher(seg, max_delay_us=1_000_000) as b:
        inputs = [images[0], odd[0], images[1], odd[1], images[2]]
        out = b.map(inputs, timeout=TIMEOUT)
        for im, labels in zip(inputs, out, strict=True):
            np.testing.assert_array_equal(labels, seg(im))
        assert b.stats()["batch_sizes"][2:4] == [1, 1]  # 2 of 37x53, 3 of 32x48


def test_an_error_reaches_only_its_own_future(tiny, images):
    seg = Segmenter(tiny, max_batch=4, shapes=[(32, 48)], strict=True, threads=1)
    with Batcher(seg, max_delay_us=300_000) as b:
        good = [b.submit(images[0]), b.submit(images[1])]
        unplanned = b.submit(rand_images(1, 37, 53)[0])
        floats = b.submit(np.zeros((32, 48, 3), np.float32))
        batch = b.submit(images[:2])
        wrong = b.submit(b"not an image")
        for im, f in zip(images[:2], good, strict=True):
            np.testing.assert_array_equal(f.result(TIMEOUT), seg(im))
        with pytest.raises(
            ValueError,
            match=r"^Segmenter.segment: input 'images': expected a planned shape \(32x48\) in strict mode, got 37x53$",
        ):
            unplanned.result(TIMEOUT)
        with pytest.raises(
            ValueError,
            match=r"^Segmenter.segment: input 'images': expected dtype uint8, got float32$",
        ):
            floats.result(TIMEOUT)
        with pytest.raises(
            ValueError,
            match=r"^Batcher.submit: input 'image': expected shape \[H,W,3\], got \[2,32,48,3\] \(rank 4\)$",
        ):
            batch.result(TIMEOUT)
        with pytest.raises(
            TypeError, match=r"^Batcher.submit: input 'image': expected a numpy array"
        ):
            wrong.result(TIMEOUT)
        np.testing.assert_array_equal(b.submit(images[2]).result(TIMEOUT), seg(images[2]))
        stats = b.stats()
    assert stats["completed"] == 3 and stats["failed"] == 3  # the TypeError never reached C++
    assert stats["requests"] == stats["completed"] + stats["failed"] + stats["cancelled"]


def test_close_drains_or_cancels(seg, images):
    b = Batcher(seg, max_batch=1, max_delay_us=10_000_000)  # batches of 1: the rest queue
    futures = [b.submit(im) for im in images[:5]]
    b.close()  # drain: every queued request runs, without waiting for the delay
    for im, f in zip(images[:5], futures, strict=True):
        np.testing.assert_array_equal(f.result(TIMEOUT), seg(im))

    b = Batcher(seg, max_delay_us=10_000_000)  # waits 10 s for a full batch
    pending = [b.submit(images[0]), b.submit(rand_images(1, 37, 53)[0])]
    time.sleep(0.05)
    t0 = time.perf_counter()
    b.close(drain=False)
    assert time.perf_counter() - t0 < 5
    for f in pending:
        with pytest.raises(CancelledError):
            f.result(TIMEOUT)
    assert b.closed and b.stats()["cancelled"] == 2
    with pytest.raises(RuntimeError, match=r"^Batcher.submit: the batcher is closed$"):
        b.submit(images[0]).result(TIMEOUT)
    b.close()  # idempotent


def test_a_future_cancelled_by_its_caller_is_dropped_quietly(seg, images):
    # pytest turns an exception raised in the completion (a worker thread) into a failure.
    with Batcher(seg, max_delay_us=200_000) as b:
        f = b.submit(images[0])
        assert f.cancel()
        np.testing.assert_array_equal(b.submit(images[1]).result(TIMEOUT), seg(images[1]))
    assert b.stats()["completed"] == 2


def test_pool_submit(tiny, images):
    pool = SegmenterPool(tiny, size=2, max_batch=2, shapes=[(32, 48)], threads=1, max_delay_us=1000)
    futures = [pool.submit(im) for im in images]
    direct = [pool(im) for im in images]
    for f, want in zip(futures, direct, strict=True):
        np.testing.assert_array_equal(f.result(TIMEOUT), want)
    assert pool.batcher.max_batch == 2 and pool.batcher.max_delay_us == 1000
    pool.batcher.close()


def test_options_are_checked(tiny, seg):
    with pytest.raises(
        TypeError, match=r"^BatcherOptions: 'max_delay_us': expected an int, got float$"
    ):
        Segmenter(tiny, max_delay_us=1.5)
    with pytest.raises(
        ValueError,
        match=r"^BatcherOptions: 'max_delay_us': expected microseconds in \[0, 60000000\], got -1$",
    ):
        Segmenter(tiny, max_delay_us=-1)
    with pytest.raises(
        TypeError, match=r"^BatcherOptions: 'max_delay_us': expected an int, got bool$"
    ):
        SegmenterPool(tiny, size=1, max_delay_us=True)
    with pytest.raises(
        TypeError,
        match=r"^Batcher: 'runner': expected an ifa_rt.Segmenter or SegmenterPool, got str$",
    ):
        Batcher("camvid")
    with pytest.raises(
        ValueError,
        match=r"^BatcherOptions: 'max_batch': expected an integer in \[0, 1024\] \(0: the engine's\), got 5000$",
    ):
        Batcher(seg, max_batch=5000)
    with Batcher(seg) as b:
        assert (b.max_batch, b.max_delay_us) == (4, 0)  # the engine's max_batch; Triton's delay


def test_interpreter_exits_promptly_with_requests_pending(tiny):
    # A worker needs the GIL to complete a request; at exit the batchers are closed (queued
    # requests cancelled) before finalization, so exit neither hangs nor crashes.
    script = textwrap.dedent(
        f"""
        import numpy as np
        import ifa_rt
        seg = ifa_rt.Segmenter({tiny!r}, max_batch=4, shapes=[(32, 48)], threads=1,
                               max_delay_us=30_000_000)
        f = seg.submit(np.zeros((32, 48, 3), np.uint8))  # waits 30 s for company
        f.add_done_callback(lambda f: print("cancelled" if f.cancelled() else "ran", flush=True))
        print("exiting", flush=True)
        """
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["exiting", "cancelled"]
    assert time.perf_counter() - t0 < 30


def test_submit_copies_so_the_caller_may_reuse_its_buffer(seg, images):
    """A video loop reuses one frame buffer: what was queued must be what is segmented."""
    frame = images[0].copy()
    want = [seg(images[i]) for i in range(3)]
    assert not np.array_equal(want[0], want[1])
    with Batcher(seg, max_delay_us=300_000) as b:  # requests wait, while the buffer changes
        futures = []
        for i in range(3):
            frame[...] = images[i]
            futures.append(b.submit(frame))
        frame[...] = 0
        for future, labels in zip(futures, want, strict=True):
            np.testing.assert_array_equal(future.result(TIMEOUT), labels)


def test_dropping_the_last_reference_in_a_done_callback(tiny):
    """A done-callback that drops the Batcher runs on its worker: the process must survive."""
    script = textwrap.dedent(
        f"""
        import time
        import numpy as np
        import ifa_rt
        from ifa_rt.runtime.batcher import Batcher
        seg = ifa_rt.Segmenter({tiny!r}, max_batch=1, shapes=[(32, 48)], threads=1)
        holder = [Batcher(seg, max_delay_us=200_000)]
        image = np.zeros((32, 48, 3), np.uint8)
        futures = [holder[0].submit(image) for _ in range(4)]
        def drop(_):  # runs on the worker; the sleep lets the main thread reach exit first
            holder.clear()  # the last reference
            time.sleep(0.5)
        futures[0].add_done_callback(drop)
        print(sum(f.result(30).shape == (32, 48) for f in futures), flush=True)
        print(seg(image).shape, flush=True)  # the engine still serves
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["4", "(32, 48)"]
