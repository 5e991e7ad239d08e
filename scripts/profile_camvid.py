#!/usr/bin/env python
"""Where the time of the bundled CamVid model goes, per kernel, in each compiled precision.

The graph each engine compiles (int8: the shipped recipe's quantized graph; bf16 / fp32: the
fused model cast to that dtype) is run through `torch.compile` with inductor's kernel
profiling on (the same kernels AOTInductor emits), under `torch.profiler`, on one real CamVid
val frame, 2 threads. The JSON lists each kernel's share of the time per call, grouped as
oneDNN convolutions, inductor's fused kernels (named by what they fuse), and the rest.

    .venv/bin/python scripts/profile_camvid.py --precision int8 \
        --json docs/bench/profile-camvid-int8-360x480.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from host import host_info, loadavg  # noqa: E402

from ifa_rt.bundled import resolve  # noqa: E402
from ifa_rt.data import camvid  # noqa: E402
from ifa_rt.deploy.aoti import export_graph  # noqa: E402
from ifa_rt.deploy.rebuild import rebuild_from_artifact  # noqa: E402
from ifa_rt.side_files import file_sha256  # noqa: E402


def graph_for(precision: str, shape: tuple[int, int], coarse: bool) -> torch.nn.Module:
    """The exported graph the package of `precision` is compiled from (with `coarse`, as
    packages are: without the final upsample and labels, which the runtime does)."""
    artifact = resolve("camvid")
    wrapper, _ = rebuild_from_artifact(artifact, coarse=coarse)
    images = torch.zeros(1, *shape, 3, dtype=torch.uint8)
    if precision == "int8":
        from ifa_rt.deploy.quantize import _Calibrated
        from ifa_rt.side_files import calibration_for, load_calibration

        spec = load_calibration(calibration_for(artifact), artifact)
        calibrated = _Calibrated.from_state(wrapper, spec["observers"], spec["keep_fp32"])
        return calibrated.convert(1, *shape)[0]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    return export_graph(wrapper.to(dtype), images)


def group(name: str) -> str:
    """oneDNN convolution, an inductor kernel (graph_*), or framework overhead."""
    if name.startswith(("onednn::", "mkldnn::")):
        return "oneDNN convolutions"
    if name.startswith("graph_"):
        return "inductor fused kernels"
    return "other"


def main() -> None:
    """Profile one precision and print / write the per-kernel table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=["int8", "bf16", "fp32"], default="int8")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--coarse",
        action="store_true",
        help="profile the packages' graph (coarse logits: the runtime does upsample + labels)",
    )
    args = p.parse_args()
    shape = (360, 480)
    torch.set_num_threads(args.threads)
    import torch._inductor.config as inductor

    inductor.freezing = True
    inductor.cpp.enable_kernel_profile = True
    load_before = loadavg()
    frame = np.asarray(camvid("val").read(0)[0])
    images = torch.from_numpy(frame.copy())[None]
    with torch.no_grad():
        compiled = torch.compile(graph_for(args.precision, shape, args.coarse))
        for _ in range(5):
            compiled(images)
        start = time.perf_counter()
        with torch.profiler.profile() as prof:
            for _ in range(args.calls):
                compiled(images)
        wall_ms = (time.perf_counter() - start) * 1e3 / args.calls
    rows = []
    for event in prof.key_averages():
        if event.self_cpu_time_total <= 0 or event.key.startswith("## Call"):
            continue
        ms = event.self_cpu_time_total / 1e3 / args.calls
        rows.append({"kernel": event.key, "group": group(event.key), "ms_per_call": ms})
    rows.sort(key=lambda r: -r["ms_per_call"])
    groups: dict[str, float] = {}
    for r in rows:
        groups[r["group"]] = groups.get(r["group"], 0.0) + r["ms_per_call"]
    print(f"{args.precision}: {wall_ms:.1f} ms per call (profiled, Python-called)")
    for name, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:6.2f} ms  {name}")
    for r in rows[:8]:
        print(f"  {r['ms_per_call']:6.2f} ms  {r['kernel'][:90]}")
    if args.json:
        result = {
            "command": shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "precision": args.precision,
            "graph": "coarse logits (packages)" if args.coarse else "labels (in-graph tail)",
            "shape": list(shape),
            "threads": args.threads,
            "calls": args.calls,
            "ms_per_call": wall_ms,
            "groups_ms": groups,
            "kernels": rows[:25],
            "artifact_sha256": file_sha256(resolve("camvid")),
            "host": host_info(),
            "load": {"before": load_before, "after": loadavg()},
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
