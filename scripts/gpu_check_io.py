"""The GPU check's I/O steps: device-memory calls, and overlap of staging with compute.

Called by scripts/gpu_check.py with its `GpuCheck` (artifacts, shapes, data, dry run). In the
dry run the engine is a CPU one: the device-memory step checks its host-DLPack path and its
clear refusal of device calls instead, and the overlap step runs its plumbing on the CPU.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from gpu_check import load_images, percentiles, time_calls
from gpu_check_report import StepFailed


def _r50_fp16(check, **options):
    """The R50 at its largest checked size in fp16, a batch of real frames, and the size."""
    from ifa_rt import Segmenter

    shape = check.shapes["r50"][-1]
    images = load_images(check.args.data, shape, 1) * (2 if check.dry else 8)
    seg = Segmenter(
        str(check.artifacts["r50"]),
        device=check.device,
        precision="fp16",
        shapes=[shape],
        max_batch=len(images),
        **options,
    )
    return seg, images, shape


def device_memory(check) -> dict:
    """CUDA tensors in, CUDA labels/logits out: equal to the host path, on the caller's
    stream, no allocation after warm-up; latency with and without the host round trip."""
    seg, images, shape = _r50_fp16(check, plan_logits=True)
    batch = np.stack(images)
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
    iters = 50
    for b in (1, len(images)):
        for path, x in (
            ("host (numpy in, numpy out)", batch[:b]),
            ("device (CUDA tensors)", on_device[:b]),
        ):
            ms = time_calls(lambda x=x: seg(x), iters, sync=True)
            rows.append(
                {
                    "path": path,
                    "batch": b,
                    **percentiles(ms),
                    "images_per_s": round(b * 1000 / np.median(ms), 1),
                }
            )
    stats = seg.stats()
    if stats["allocations_after_warmup"] not in (0, -1):
        failed.append(f"{stats['allocations_after_warmup']} allocations after warm-up")
    if failed:
        raise StepFailed("; ".join(failed), rows=rows)
    return {"rows": rows, "note": f"cityscapes-r50 fp16 {shape[0]}x{shape[1]}, {iters} calls each"}


def _dry_device_memory(seg, batch: np.ndarray, host: np.ndarray) -> dict:
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


def overlap(check) -> dict:
    """Throughput of back-to-back batches on one engine: one thread (each call waits for its
    copies and replay), two threads (one stages while the other computes), and the Batcher."""
    seg, images, shape = _r50_fp16(check)
    b = len(images)
    batch = np.stack(images)
    want = seg(batch)
    calls = 4 if check.dry else 40
    rows, wrong = [], []

    def serial() -> None:
        for _ in range(calls):
            if not np.array_equal(seg(batch), want):
                wrong.append("serial")

    def two_threads() -> None:
        def work() -> None:
            for _ in range(calls // 2):
                if not np.array_equal(seg(batch), want):
                    wrong.append("threads")

        workers = [threading.Thread(target=work) for _ in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    def batcher() -> None:
        futures = [seg.submit(images[i % b]) for i in range(calls * b)]
        for i, f in enumerate(futures):
            if not np.array_equal(f.result(), want[i % b]):
                wrong.append("batcher")

    for label, fn in (
        ("1 thread", serial),
        ("2 threads", two_threads),
        ("Batcher (submit)", batcher),
    ):
        fn()  # warm: threads, batcher workers
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        rows.append(
            {"mode": label, "images": calls * b, "images_per_s": round(calls * b / seconds, 1)}
        )
    rows[-1]["mean_batch"] = round(seg.batcher.stats()["mean_batch_size"], 2)
    if wrong:
        raise StepFailed(f"wrong labels: {sorted(set(wrong))}", rows=rows)
    return {"rows": rows, "note": f"cityscapes-r50 fp16 {shape[0]}x{shape[1]}, batches of {b}"}
