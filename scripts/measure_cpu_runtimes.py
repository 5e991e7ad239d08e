"""CPU latency of the C++ runtime's options against TorchScript from Python (one process).

    python scripts/measure_cpu_runtimes.py [--preset cityscapes-r50] [--shapes 512x1024,360x480]
        [--iters 5] [--artifact PATH] [--json out/cpu_runtimes.json]

Exports the preset with ifa_rt.export (random weights: latency does not depend on them) unless
--artifact is given, then for each shape builds, in one process: TorchScript loaded in Python
(plain, and frozen), and ifa_rt.Segmenter with runtime="jit" (frozen module), "jit" +
optimize_for_inference, and "static" (Static Runtime). Calls are interleaved round-robin
(one call of each variant per round) and the medians reported, with first-call (profiling run)
times and the memory plan of each Segmenter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import ifa_rt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cityscapes-r50")
    p.add_argument("--artifact", type=Path)
    p.add_argument("--shapes", default="512x1024,360x480")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=Path("out/cpu_runtimes.json"))
    args = p.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    path = args.artifact
    if path is None:
        path = Path("out") / f"{args.preset}.ifa.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        ifa_rt.export(ifa_rt.build_model(args.preset).eval(), path, verify=False)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {
        "artifact": str(path),
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "torch": torch.__version__,
        "shapes": {},
    }
    for shape in args.shapes.split(","):
        h, w = (int(v) for v in shape.split("x"))
        x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        xt = torch.from_numpy(x)
        variants, first, plan = {}, {}, {}
        py = torch.jit.load(str(path)).eval()
        frozen = torch.jit.freeze(torch.jit.load(str(path)).eval())
        for name, module in (("torchscript-python", py), ("torchscript-python-frozen", frozen)):
            with torch.inference_mode():
                t = time.perf_counter()
                module(xt)
                first[name] = (time.perf_counter() - t) * 1e3
                module(xt)

            def call(module=module, xt=xt):
                with torch.inference_mode():
                    module(xt)

            variants[name] = call
        for name, kw in (
            ("cpp-jit", dict(runtime="jit")),
            ("cpp-jit-optimize", dict(runtime="jit", optimize=True)),
            ("cpp-static-runtime", dict(runtime="static")),
        ):
            t = time.perf_counter()
            try:
                seg = ifa_rt.Segmenter(path, shapes=[(h, w)], threads=args.threads, **kw)
            except RuntimeError as exc:
                print(f"{name}: {exc}")
                continue
            st = seg.stats()
            first[name] = st["first_call_ms"]
            plan[name] = {
                "construction_s": time.perf_counter() - t,
                "plan_mib": seg.plan["total_bytes"] / 2**20,
                "buffers": seg.plan["buffers"],
            }
            out = np.empty((1, h, w), np.uint8)
            variants[name] = lambda seg=seg, out=out, x=x: seg._engine.segment_into(x, out)
        times = {k: [] for k in variants}
        for _ in range(args.iters):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1e3)
        rows = {
            k: {
                "median_ms": statistics.median(v),
                "min_ms": min(v),
                "first_call_ms": first[k],
                "all_ms": v,
                **plan.get(k, {}),
            }
            for k, v in times.items()
        }
        report["shapes"][shape] = rows
        base = rows["torchscript-python"]["median_ms"]
        print(f"\n{shape} ({args.iters} interleaved rounds, {report['threads']} threads)")
        print(
            f"{'variant':28s} {'median ms':>10s} {'vs py':>6s} {'first ms':>10s} {'plan MiB':>9s}"
        )
        for k, r in rows.items():
            print(
                f"{k:28s} {r['median_ms']:10.1f} {r['median_ms'] / base:6.2f} "
                f"{r['first_call_ms']:10.1f} {r.get('plan_mib', float('nan')):9.1f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
