"""The GPU check's speed steps: the Segmenter's captured graphs, eager PyTorch (TF32 on and
off), AOTInductor on CUDA and torch.compile, all on the R50 at its largest checked size.

Called by scripts/gpu_check.py with its `GpuCheck` (artifacts, shapes, data, dry run, the
engines built so far); imports only the check's helpers. The goals (R50 1024x2048): batch-1
fp16/bf16 p50 <= 4 ms, batch 8 >= 300 images/s, >= 5x eager fp32, no allocation once warm.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from gpu_check_common import agreement, images_per_s, load_images, percentiles, time_calls
from gpu_check_report import StepFailed, StepSkipped

P50_GOAL_MS = 4.0
RATE_GOAL = 300.0
EAGER_FACTOR_GOAL = 5.0
# The AOTI package against the TorchScript graphs of the same precision on the random-weight
# R50, whose labels are near-ties everywhere: a check that it computes the same model, not an
# accuracy goal (accuracy is gated on the trained CamVid model).
AOTI_AGREEMENT_GATE = 0.99


def _row(engine: str, batch: int, ms: list[float], **extra) -> dict:
    """One latency table row: engine, batch, p50/p90/p99, images/s and any extra columns."""
    return {
        "engine": engine,
        "batch": batch,
        **percentiles(ms),
        "images_per_s": images_per_s(batch, ms),
        "calls": len(ms),
        **extra,
    }


def _inputs(check) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """The R50's largest checked shape, one real frame and a batch of it."""
    shape = check.shapes["r50"][-1]
    one = load_images(check.data, shape, 1)[0]
    return shape, one, np.stack([one] * check.batch)


def segmenter_latency(check) -> dict:
    """The Segmenter's fp16 and bf16 graphs (buckets 1, 2, 4, .., 8): batch-1 p50, batch-8
    images/s, first call, build time, allocations once warm."""
    from ifa_rt import Segmenter

    shape, one, many = _inputs(check)
    rows, failed = [], []
    for precision in ("fp16", "bf16"):
        t0 = time.perf_counter()
        seg = Segmenter(
            str(check.artifacts["r50"]),
            device=check.device,
            precision=precision,
            shapes=[shape],
            max_batch=check.batch,
            batch_invariant=False,  # batched buckets: the batch-8 goal is about them
        )
        built = time.perf_counter() - t0
        first = time_calls(functools.partial(seg, one), 1, check.sync)[0]
        for b, x in ((1, one), (check.batch, many)):
            ms = time_calls(functools.partial(seg, x), check.iters, check.sync, budget_s=8)
            rows.append(_row(f"Segmenter {precision}", b, ms))
        stats = seg.stats()
        rows[-2].update(first_call_ms=round(first, 1), build_s=round(built, 1))
        for r in rows[-2:]:
            r["allocations_after_warmup"] = stats["allocations_after_warmup"]
            r["fallback_calls"] = stats["fallback_calls"]
        if stats["allocations_after_warmup"] not in (0, -1) or stats["fallback_calls"]:
            failed.append(
                f"{precision}: {stats['allocations_after_warmup']} allocations, "
                f"{stats['fallback_calls']} fallback calls once warm"
            )
        if precision == "fp16":  # reused by the overlap and AOTI steps; bf16's memory goes
            check.engines[precision] = seg
    check.latency_rows = rows
    result = {
        "rows": rows,
        "goals": segmenter_goals(rows, check.dry),
        "note": f"cityscapes-r50 {shape[0]}x{shape[1]}, batch_invariant=False, "
        f"up to {check.iters} calls per row",
    }
    if failed:
        raise StepFailed("; ".join(failed), **result)
    return result


def _met(ok: bool, dry: bool) -> str:
    return "n/a (dry run)" if dry else ("yes" if ok else "NO")


def segmenter_goals(rows: list[dict], dry: bool) -> list[dict]:
    """The goals the Segmenter rows alone decide: batch-1 p50, batch-8 rate, allocations."""
    one = min((r for r in rows if r["batch"] == 1), key=lambda r: r["p50_ms"])
    big = max((r for r in rows if r["batch"] > 1), key=lambda r: r["images_per_s"])
    allocs = {r["allocations_after_warmup"] for r in rows}
    return [
        {
            "goal": f"batch 1 fp16/bf16 p50 <= {P50_GOAL_MS} ms (nearest rank)",
            "measured": f"{one['p50_ms']} ms ({one['engine']})",
            "met": _met(one["p50_ms"] <= P50_GOAL_MS, dry),
        },
        {
            "goal": f"batch {big['batch']} >= {RATE_GOAL:.0f} images/s",
            "measured": f"{big['images_per_s']} images/s ({big['engine']})",
            "met": _met(big["images_per_s"] >= RATE_GOAL, dry),
        },
        {
            "goal": "zero allocations in steady state",
            "measured": f"allocations_after_warmup {sorted(allocs)} (-1: not counted under "
            "cudaMallocAsync)",
            "met": "not counted" if -1 in allocs and not dry else _met(allocs <= {0}, dry),
        },
    ]


def _tf32(allow: bool) -> None:
    torch.backends.cudnn.allow_tf32 = allow
    torch.backends.cuda.matmul.allow_tf32 = allow


def eager(check) -> dict:
    """Eager PyTorch on the same GPU: fp32 with TF32 on (cuDNN's default) and off, and fp16
    autocast, batch 1 and 8; the ">= 5x eager fp32" goal against both fp32 rows."""
    from ifa_rt.data import MEAN, STD

    shape, one, many = _inputs(check)
    model = check.r50_eager.to(check.device).eval()
    mean = torch.tensor(MEAN, device=check.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=check.device).view(1, 3, 1, 1)
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    rows = []
    try:
        for label, tf32, dtype in (
            ("eager fp32, TF32 on", True, None),
            ("eager fp32, TF32 off", False, None),
            ("eager fp16 autocast", True, torch.float16),
        ):
            _tf32(tf32)
            for b, x in ((1, one), (check.batch, many)):
                fn = _eager_call(check, model, mean, std, x, dtype)
                time_calls(fn, 2, check.sync)  # cuDNN heuristics and allocator warm-up
                ms = time_calls(fn, check.iters, check.sync, budget_s=4)
                rows.append(
                    _row(
                        label,
                        b,
                        ms,
                        tf32="on" if tf32 else "off",
                        cudnn_benchmark=torch.backends.cudnn.benchmark,
                    )
                )
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    check.eager_rows = rows
    goals = []
    fast = [r for r in check.latency_rows if r["batch"] == 1]
    if fast:
        best = min(fast, key=lambda r: r["p50_ms"])
        for r in rows:
            if r["batch"] == 1 and r["engine"].startswith("eager fp32"):
                factor = r["p50_ms"] / best["p50_ms"]
                goals.append(
                    {
                        "goal": f">= {EAGER_FACTOR_GOAL:.0f}x {r['engine']} (batch 1)",
                        "measured": f"{factor:.1f}x ({best['engine']})",
                        "met": _met(factor >= EAGER_FACTOR_GOAL, check.dry),
                    }
                )
    note = f"cityscapes-r50 {shape[0]}x{shape[1]}; torch's default: cuDNN TF32 on, matmul off"
    return {"rows": rows, "goals": goals, "note": note}


def _eager_call(check, net, mean, std, x: np.ndarray, dtype):
    """A call of `net` on host frames the way the Segmenter is called: copy in, normalise,
    labels back on the host."""

    def run():
        with (
            torch.inference_mode(),
            torch.autocast(check.device, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            t = torch.from_numpy(x).to(check.device).reshape(-1, *x.shape[-3:])
            t = (t.permute(0, 3, 1, 2).float() - mean) / std
            return net(t).argmax(1).to(torch.uint8).cpu()

    return run


def fuser(check) -> dict:
    """The fp16 graphs with TorchScript's TensorExpr fuser off beside the default ("auto":
    on for CUDA): build time (NVRTC compiles during warm-up) and latency, once."""
    import inspect

    from ifa_rt import Segmenter

    if "fuser" not in inspect.signature(Segmenter).parameters:
        raise StepSkipped("this tree's Segmenter has no fuser option")
    shape, one, many = _inputs(check)
    t0 = time.perf_counter()
    seg = Segmenter(
        str(check.artifacts["r50"]),
        device=check.device,
        precision="fp16",
        shapes=[shape],
        max_batch=check.batch,
        batch_invariant=False,
        fuser="off",
    )
    built = time.perf_counter() - t0
    rows = [dict(r, fuser="auto") for r in check.latency_rows if r["engine"] == "Segmenter fp16"]
    for b, x in ((1, one), (check.batch, many)):
        ms = time_calls(functools.partial(seg, x), check.iters, check.sync, budget_s=8)
        rows.append(_row("Segmenter fp16", b, ms, fuser="off"))
    rows[-2]["build_s"] = round(built, 1)
    note = f"cityscapes-r50 {shape[0]}x{shape[1]}"
    if "fp16" in check.engines:  # the fused graphs round elementwise chains differently
        agree = agreement([seg(one)], [check.engines["fp16"](one)])
        note += f"; labels fuser off vs auto agree {agree:.4%} (reported)"
    return {"rows": rows, "note": note}


def torch_compile(check) -> dict:
    """torch.compile of the eager R50 (default mode), fp16 autocast, batch 1: the compiler's
    number beside the captured graphs (one cold compile; batch 8 would be a second)."""
    if check.dry:
        raise StepSkipped("the dry run does not compile (a cold R50 compile takes minutes)")
    from ifa_rt.data import MEAN, STD

    shape, one, _ = _inputs(check)
    model = check.r50_eager.to(check.device).eval()
    mean = torch.tensor(MEAN, device=check.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=check.device).view(1, 3, 1, 1)
    fn = _eager_call(check, torch.compile(model), mean, std, one, torch.float16)
    t0 = time.perf_counter()
    time_calls(fn, 3, check.sync)
    compiled = time.perf_counter() - t0
    ms = time_calls(fn, check.iters, check.sync, budget_s=8)
    row = _row("torch.compile fp16 autocast", 1, ms, compile_s=round(compiled, 1))
    return {"rows": [row], "note": f"cityscapes-r50 {shape[0]}x{shape[1]}, default mode"}


def aoti(check) -> dict:
    """The AOTInductor package compiled for CUDA on this machine (fp16, batch 1, the R50's
    largest shape) and served by the C++ runtime's CUDA engine, beside the TorchScript graphs."""
    if check.dry:
        raise StepSkipped("the dry run has no CUDA: AOTInductor for CUDA compiles on the GPU")
    import inspect

    from ifa_rt import Segmenter
    from ifa_rt.deploy.aoti import compile_package
    from ifa_rt.deploy.rebuild import rebuild_from_artifact

    if "device" not in inspect.signature(compile_package).parameters:
        raise StepSkipped(
            "ifa_rt.deploy.aoti.compile_package takes no device=: this tree "
            "compiles AOTInductor packages for the CPU only"
        )

    shape, one, _ = _inputs(check)
    artifact = check.artifacts["r50"]
    pt2 = check.work / "cityscapes-r50-fp16-cuda.pt2"
    wrapper, meta = rebuild_from_artifact(artifact, coarse=True)
    t0 = time.perf_counter()
    compile_package(
        wrapper.to(torch.float16),
        meta,
        artifact,
        pt2,
        shapes=[shape],
        max_batch=1,
        precision="fp16",
        device="cuda",
    )
    compiled = time.perf_counter() - t0
    seg = Segmenter(str(pt2), device="cuda")
    labels = seg(one)
    ms = time_calls(functools.partial(seg, one), check.iters, check.sync, budget_s=8)
    stats = seg.stats()
    rows = [
        _row(
            "AOTI fp16 (.pt2)",
            1,
            ms,
            compile_s=round(compiled, 1),
            allocations_after_warmup=stats["allocations_after_warmup"],
        )
    ]
    rows += [r for r in check.latency_rows if r["batch"] == 1]  # the graphs, same table
    problems = []
    if "fp16" in check.engines:
        agree = agreement([labels], [check.engines["fp16"](one)])
        rows[0]["agreement_vs_torchscript_fp16"] = f"{agree:.4%}"
        if agree < AOTI_AGREEMENT_GATE:
            problems.append(f"labels agree {agree:.4%} with the TorchScript fp16 graphs")
    result = {"rows": rows, "note": f"cityscapes-r50 {shape[0]}x{shape[1]}, fp16, one bucket"}
    if problems:
        raise StepFailed("; ".join(problems), **result)
    return result
