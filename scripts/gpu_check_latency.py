"""The GPU check's latency step: Segmenter against eager PyTorch and torch.compile.

Called by scripts/gpu_check.py with its `GpuCheck` (artifacts, shapes, data, dry run); the
latency goals (batch-1 p50, batch-8 images/s, × eager) are read off the rows.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from gpu_check import load_images, percentiles, time_calls


def latency(check) -> dict:
    """Segmenter fp32/fp16/bf16 at batch 1 and 8 vs eager and torch.compile, same GPU."""
    from ifa_rt import Segmenter
    from ifa_rt.data import MEAN, STD

    shape = check.shapes["r50"][-1]
    iters = 3 if check.dry else 50
    batch8 = 2 if check.dry else 8
    images = load_images(check.args.data, shape, 1) * batch8
    one, many = images[0], np.stack(images)
    sync = not check.dry
    rows = []
    for precision in ("fp32", "fp16", "bf16"):
        t0 = time.perf_counter()
        seg = Segmenter(
            str(check.artifacts["r50"]),
            device=check.device,
            precision=precision,
            shapes=[shape],
            max_batch=batch8,
        )
        built = time.perf_counter() - t0
        first = time_calls(functools.partial(seg, one), 1, sync)[0]
        for b, x in ((1, one), (batch8, many)):
            ms = time_calls(functools.partial(seg, x), iters, sync)
            rows.append(
                {
                    "engine": f"Segmenter {precision}",
                    "batch": b,
                    **percentiles(ms),
                    "images_per_s": round(b * 1000 / np.median(ms), 1),
                    "first_call_ms": round(first, 1) if b == 1 else "",
                    "build_s": round(built, 1) if b == 1 else "",
                }
            )
    model = check.r50_eager.to(check.device)
    mean = torch.tensor(MEAN, device=check.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=check.device).view(1, 3, 1, 1)

    def eager_fn(net, x: np.ndarray, dtype):
        def run():
            with (
                torch.inference_mode(),
                torch.autocast(
                    check.device, dtype=dtype or torch.float32, enabled=dtype is not None
                ),
            ):
                t = torch.from_numpy(x).to(check.device).reshape(-1, *x.shape[-3:])
                t = (t.permute(0, 3, 1, 2).float() - mean) / std
                return net(t).argmax(1).to(torch.uint8).cpu()

        return run

    variants = [("eager fp32", model, None), ("eager fp16 autocast", model, torch.float16)]
    if not check.dry:
        compiled = torch.compile(model)
        variants += [
            ("torch.compile fp32", compiled, None),
            ("torch.compile fp16 autocast", compiled, torch.float16),
        ]
    for label, net, dtype in variants:
        for b, x in ((1, one), (batch8, many)):
            fn = eager_fn(net, x, dtype)
            time_calls(fn, 3, sync)  # compile / cudnn autotune outside the timing
            ms = time_calls(fn, iters, sync)
            rows.append(
                {
                    "engine": label,
                    "batch": b,
                    **percentiles(ms),
                    "images_per_s": round(b * 1000 / np.median(ms), 1),
                    "first_call_ms": "",
                    "build_s": "",
                }
            )
    return {
        "rows": rows,
        "goals": goals(rows),
        "note": f"cityscapes-r50 {shape[0]}x{shape[1]}, {iters} calls"
        + ("" if not check.dry else "; torch.compile skipped in the dry run"),
    }


def goals(rows: list[dict]) -> list[dict]:
    """The issue's GPU goals (cityscapes-r50 at 1024x2048) read off the latency rows."""

    def find(engine: str, batch: int) -> dict:
        return next(r for r in rows if r["engine"] == engine and r["batch"] == batch)

    big = max(r["batch"] for r in rows)
    fast = min((find(f"Segmenter {p}", 1) for p in ("fp16", "bf16")), key=lambda r: r["p50_ms"])
    best_rate = max(r["images_per_s"] for r in rows if r["engine"].startswith("Segmenter"))
    eager = find("eager fp32", 1)["p50_ms"]
    return [
        {"goal": "batch 1 fp16/bf16 p50 <= 4 ms", "measured": f"{fast['p50_ms']} ms"},
        {"goal": f"batch {big} >= 300 images/s", "measured": f"{best_rate} images/s"},
        {"goal": ">= 5x eager fp32 (batch 1)", "measured": f"{eager / fast['p50_ms']:.1f}x"},
        {
            "goal": "first served call <= 1.2x steady p50",
            "measured": f"{fast['first_call_ms'] / fast['p50_ms']:.2f}x",
        },
    ]
