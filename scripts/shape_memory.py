"""Memory of `Segmenter("camvid")` fed many distinct unplanned sizes, per `shape_cache` value.

    python scripts/shape_memory.py                                   # 120 sizes, 0.3-1 MP
    python scripts/shape_memory.py --sizes 40 --min-mp 0.1 --max-mp 0.3 --capacities 0,1
    python scripts/shape_memory.py --json docs/bench/shape-memory-camvid.json

Each capacity runs in a fresh process (RSS of one process mixes nothing else in): it serves the
planned 360×480 once, then `--sizes` distinct sizes drawn between `--min-mp` and `--max-mp`
megapixels (crops and tiles of a real CamVid frame), reading its RSS every 10 sizes. A value
passes when RSS grows at most `--max-growth-mb` after the warm-up (the first 10 sizes) and the
last half of the run stays within `--flat-mb` (flat: nothing accumulates per size).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

PROBE = """
import json, sys, time
import numpy as np
from PIL import Image
import ifa_rt

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

frame_path, capacity, sizes = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
mmap_kb, trim_mb = int(sys.argv[4]), int(sys.argv[5])
frame = np.asarray(Image.open(frame_path).convert("RGB"))
kwargs = {} if capacity < 0 else {"shape_cache": capacity}
if mmap_kb >= 0:
    kwargs["mmap_threshold_kb"] = mmap_kb
if trim_mb >= 0:
    kwargs["trim_heap_mb"] = trim_mb
seg = ifa_rt.Segmenter("camvid", precision="fp32", runtime="jit", shapes=[(360, 480)],
                       threads=2, **kwargs)
planned = seg(frame)
reps = (4, 4, 1)  # tile the frame so every size up to 4x its area has real content
big = np.ascontiguousarray(np.tile(frame, reps))
rss, ms = [], []
for k, (h, w) in enumerate(sizes, start=1):
    crop = np.ascontiguousarray(big[:h, :w])
    t0 = time.perf_counter()
    seg(crop)
    ms.append(1000 * (time.perf_counter() - t0) / (h * w / 1e6))
    if k % 10 == 0:
        rss.append(round(rss_mb(), 1))
        print(json.dumps({"progress": k}), flush=True)
stats = seg.stats()
print(json.dumps({"rss_mb": rss, "same": bool((seg(frame) == planned).all()),
                  "median_ms_per_mp": round(sorted(ms)[len(ms) // 2], 1),
                  "shape_cache": stats["shape_cache"], "fallback_calls": stats["fallback_calls"],
                  "heap_trims": stats.get("heap_trims")}), flush=True)
"""


def draw_sizes(count: int, min_mp: float, max_mp: float, seed: int = 0) -> list[list[int]]:
    """`count` distinct (H, W), aspect 0.5-1.0 (H ≤ W, as camera frames), area in the range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes: set[tuple[int, int]] = set()
    while len(sizes) < count:
        area = rng.uniform(min_mp, max_mp) * 1e6
        aspect = rng.uniform(0.5, 1.0)
        h = int((area * aspect) ** 0.5)
        w = int(area / h)
        sizes.add((max(h, 32), max(w, 32)))
    return [list(s) for s in sorted(sizes, key=lambda s: rng.random())]


def measure(capacity: int, sizes: list[list[int]], frame: Path, mmap_kb=-1, trim_mb=-1) -> dict:
    """Run the probe in a fresh process for one capacity (-1: the Segmenter's defaults)."""
    cmd = [sys.executable, "-c", PROBE, str(frame), str(capacity), json.dumps(sizes)]
    cmd += [str(mmap_kb), str(trim_mb)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        label = "default" if capacity < 0 else str(capacity)
        last = None
        with tqdm(total=len(sizes), desc=f"shape_cache={label}", unit="size") as bar:
            for line in p.stdout:
                last = json.loads(line)
                if "progress" in last:
                    bar.update(last["progress"] - bar.n)
        err = p.stderr.read()
    if p.returncode != 0 or last is None or "rss_mb" not in last:
        raise RuntimeError(f"shape_memory: probe failed (exit {p.returncode}):\n{err[-2000:]}")
    return last


def verdict(result: dict, max_growth_mb: float, flat_mb: float) -> dict:
    """Growth after warm-up, spread over the last half, and whether both are within bounds."""
    rss = result["rss_mb"]
    half = rss[len(rss) // 2 :]
    growth = max(rss) - rss[0]
    spread = max(half) - min(half)
    passed = growth <= max_growth_mb and spread <= flat_mb and result["same"]
    return {
        "growth_mb": round(growth, 1),
        "last_half_spread_mb": round(spread, 1),
        "passed": passed,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every capacity; print (and optionally write) the report; 0 when all passed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, default=120)
    p.add_argument("--min-mp", type=float, default=0.3)
    p.add_argument("--max-mp", type=float, default=1.0)
    p.add_argument("--capacities", default="0,1,default")
    p.add_argument("--max-growth-mb", type=float, default=150.0)
    # Samples between two trims differ by up to one large call's temporaries (~60-80 MB at 1 MP).
    p.add_argument("--flat-mb", type=float, default=80.0)
    p.add_argument(
        "--mmap-threshold-kb", type=int, default=-1, help="Segmenter option (default: its own)"
    )
    p.add_argument(
        "--trim-heap-mb", type=int, default=-1, help="Segmenter option (default: its own)"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from ifa_rt.data.folders import require_data_root

    frame = sorted((require_data_root() / "camvid" / "images" / "val").iterdir())[0]
    sizes = draw_sizes(args.sizes, args.min_mp, args.max_mp)
    report = {
        "command": shlex.join(["python", "scripts/shape_memory.py", *(argv or sys.argv[1:])]),
        "sizes": len(sizes),
        "megapixels": [args.min_mp, args.max_mp],
        "mmap_threshold_kb": args.mmap_threshold_kb,
        "trim_heap_mb": args.trim_heap_mb,
        "results": {},
    }
    for text in args.capacities.split(","):
        capacity = -1 if text == "default" else int(text)
        result = measure(capacity, sizes, frame, args.mmap_threshold_kb, args.trim_heap_mb)
        result.update(verdict(result, args.max_growth_mb, args.flat_mb))
        report["results"][text] = result
    sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
    from host import host_info

    from ifa_rt.bundled import resolve
    from ifa_rt.side_files import file_sha256

    report["host"] = host_info()
    report["weights_sha256"] = file_sha256(resolve("camvid"))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["passed"] for r in report["results"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
