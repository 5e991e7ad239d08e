"""The GPU check's I/O and concurrency steps: CUDA tensors in and out, threads on one engine
and a pool, a second engine built while one serves, staging overlapped with compute.

Called by scripts/gpu_check.py with its `GpuCheck`; imports only the check's helpers. In the
dry run the engines are CPU ones: the device-memory step checks the host-DLPack path and the
clear refusal of device calls instead, and the other steps run their plumbing on the CPU.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from gpu_check_common import agreement, hammer, images_per_s, load_images, percentiles, time_calls
from gpu_check_report import StepFailed

# Labels of different buckets (batch 1 vs 8) on the random-weight R50 may differ on near-ties:
# compared by agreement, not equality (equality holds within one bucket).
CROSS_BUCKET_AGREEMENT = 0.999


def device_memory(check) -> dict:
    """CUDA tensors in, CUDA labels/logits out: equal to the host path, on the caller's
    stream, no allocation once warm; latency with and without the host round trip."""
    from ifa_rt import Segmenter

    shape = check.shapes["r50"][-1]
    batch = np.stack(load_images(check.data, shape, 1) * check.batch)
    seg = Segmenter(
        str(check.artifacts["r50"]),
        device=check.device,
        precision="fp16",
        shapes=[shape],
        max_batch=check.batch,
        plan_logits=True,
    )
    host = seg(batch)
    if check.dry:
        return _dry_device_memory(seg, batch, host)
    on_device = torch.from_numpy(batch).cuda()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        labels = seg(on_device)
        logits = seg.logits(on_device[:1])
    side.synchronize()
    failed = []
    if not np.array_equal(labels.cpu().numpy(), host):
        failed.append("device labels differ from host labels")
    if not np.allclose(logits.cpu().numpy(), seg.logits(batch[:1]), rtol=1e-3, atol=1e-3):
        failed.append("device logits differ from host logits")
    rows = []
    for b in (1, check.batch):
        for path, x in (
            ("host (numpy in, numpy out)", batch[:b]),
            ("device (CUDA tensors)", on_device[:b]),
        ):
            ms = time_calls(lambda x=x: seg(x), check.iters, check.sync, budget_s=5)
            rows.append(
                {"path": path, "batch": b, **percentiles(ms), "images_per_s": images_per_s(b, ms)}
            )
    stats = seg.stats()
    if stats["allocations_after_warmup"] not in (0, -1):
        failed.append(f"{stats['allocations_after_warmup']} allocations after warm-up")
    note = f"cityscapes-r50 fp16 {shape[0]}x{shape[1]}, max_batch {check.batch}, plan_logits"
    if failed:
        raise StepFailed("; ".join(failed), rows=rows, note=note)
    return {"rows": rows, "note": note}


def _dry_device_memory(seg, batch: np.ndarray, host: np.ndarray) -> dict:
    """The CPU engine: a host DLPack array gives the same labels; a device call is refused."""

    class Foreign:  # an array known only through DLPack
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    if not np.array_equal(seg(Foreign(batch)), host):
        raise AssertionError("a host DLPack array gave other labels")
    from ifa_rt import _core

    view = _core.DeviceArray(batch.ctypes.data, list(batch.shape), list(batch.strides), "uint8")
    try:
        seg._engine.segment_device(view, host.ctypes.data, host.size, 0)
    except ValueError as exc:
        message = str(exc)
    else:
        raise AssertionError("a CPU engine accepted a device-memory call")
    return {"note": f"dry run: host DLPack ok; device call refused: {message}"}


def threads(check) -> dict:
    """8 threads on one engine and on a pool of 2 (every result equals the serial one, every
    worker's exception fails the step); then a second engine built while the first serves."""
    from ifa_rt import Segmenter, SegmenterPool

    shape = check.shapes["camvid"][0]
    images = load_images(check.data, shape, 4)
    artifact = str(check.artifacts["camvid"])
    notes, problems = [], []
    calls = 4 if check.dry else 20
    for runner in (
        Segmenter(artifact, device=check.device, shapes=[shape]),
        SegmenterPool(artifact, size=2, device=check.device, shapes=[shape]),
    ):
        found = hammer(runner, images, threads=8, calls=calls)
        name = type(runner).__name__
        problems += [f"{name}: {p}" for p in found[:5]]
        notes.append(f"{name}: 8 threads x {calls} calls, {len(found)} problems")
    notes.append(_second_engine(check, artifact, shape, images[0], problems))
    if problems:
        raise StepFailed("; ".join(problems), note="; ".join(notes))
    return {"note": "; ".join(notes)}


def _second_engine(check, artifact: str, shape, image: np.ndarray, problems: list[str]) -> str:
    """Build (warm up, capture) an R50 engine while two threads serve on a camvid one."""
    from ifa_rt import Segmenter

    first = Segmenter(artifact, device=check.device, shapes=[shape])
    want, stop, calls = first(image), threading.Event(), [0, 0]

    def serve(k: int) -> None:
        try:
            while not stop.is_set():
                if not np.array_equal(first(image), want):
                    problems.append(f"serving thread {k}: other labels while building")
                    return
                calls[k] += 1
        except Exception as exc:  # noqa: BLE001 - a worker's error is the step's failure
            problems.append(f"serving thread {k}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=serve, args=(k,), daemon=True) for k in range(2)]
    for t in workers:
        t.start()
    try:
        big = check.shapes["r50"][-1]
        second = Segmenter(
            str(check.artifacts["r50"]), device=check.device, precision="fp16", shapes=[big]
        )
        second(load_images(check.data, big, 1)[0])
    finally:
        stop.set()
        for t in workers:
            t.join()
    if min(calls) == 0:
        problems.append(f"a serving thread made no call while the second engine was built: {calls}")
    return f"{sum(calls)} calls served while an R50 fp16 engine was built"


def overlap(check) -> dict:
    """Throughput of back-to-back batches on one engine: one thread (each call waits for its
    copies and replay), two threads (one stages while the other computes), and the Batcher."""
    from ifa_rt import Segmenter

    shape = check.shapes["r50"][-1]
    images = load_images(check.data, shape, 1) * check.batch
    seg = check.engines.get("fp16") or Segmenter(  # the latency step's engine when it ran
        str(check.artifacts["r50"]),
        device=check.device,
        precision="fp16",
        shapes=[shape],
        max_batch=check.batch,
        batch_invariant=False,
    )
    b, batch = len(images), np.stack(images)
    want = seg(batch)
    single = seg(images[0])  # the batch-1 bucket
    calls = 4 if check.dry else 40
    rows, wrong, worst = [], [], [1.0]

    def serial() -> None:
        for _ in range(calls):
            if not np.array_equal(seg(batch), want):
                wrong.append("1 thread")

    def two_threads() -> None:
        def work() -> None:
            try:
                for _ in range(calls // 2):
                    if not np.array_equal(seg(batch), want):
                        wrong.append("2 threads")
            except Exception as exc:  # noqa: BLE001 - a worker's error is the step's failure
                wrong.append(f"2 threads: {type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=work, daemon=True) for _ in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    def batcher() -> None:
        # The Batcher forms batches of any size: another bucket than batch 8 or 1.
        futures = [seg.submit(images[i % b]) for i in range(calls * b)]
        got = [f.result() for f in futures]
        worst[0] = min(worst[0], agreement(got, [single] * len(got)))

    for label, fn in (
        ("1 thread", serial),
        ("2 threads", two_threads),
        ("Batcher (submit)", batcher),
    ):
        fn()  # warm: threads, the batcher's worker
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        rows.append(
            {"mode": label, "images": calls * b, "images_per_s": round(calls * b / seconds, 1)}
        )
    rows[-1]["mean_batch"] = round(seg.batcher.stats()["mean_batch_size"], 2)
    rows[-1]["agreement_vs_batch_1"] = f"{worst[0]:.4%}"
    if worst[0] < CROSS_BUCKET_AGREEMENT:
        wrong.append(
            f"Batcher labels agree {worst[0]:.4%} with batch 1 (< {CROSS_BUCKET_AGREEMENT:.1%})"
        )
    note = f"cityscapes-r50 fp16 {shape[0]}x{shape[1]}, batches of {b}"
    if wrong:
        raise StepFailed(f"wrong labels: {sorted(set(wrong))}", rows=rows, note=note)
    return {"rows": rows, "note": note}
