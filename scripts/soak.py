"""Soak test: many calls mixing planned and unplanned shapes and batch sizes on one Segmenter.

Reports the resident memory (RSS) drift after warm-up (goal < 1%), the allocation counters
of `stats()`, and that every checked result stayed identical to the first one. Prints a
summary and writes it as JSON (docs/reliability.md records one run).

    python scripts/soak.py                       # 10,000 calls on a camvid-r18 export
    python scripts/soak.py --calls 2000 --artifact path/to/model.ifa.pt --json out/soak.json

The artifact defaults to `ifa_rt.build_model("camvid-r18")` (random weights: the runtime's
memory behaviour does not depend on them) exported to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PLANNED = [(64, 96), (48, 64)]
UNPLANNED = [(56, 80), (40, 72), (72, 104)]


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("soak: VmRSS not found in /proc/self/status")


def export_default(folder: Path, preset: str) -> Path:
    """A real IFA artifact from the exporter (random weights)."""
    import ifa_rt

    path = folder / f"{preset}.ifa.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ifa_rt.export(ifa_rt.build_model(preset).eval(), path)
    return path


def make_plan(calls: int, seed: int) -> list[tuple[str, int, int, int]]:
    """The call mix: (kind, batch, height, width) per call, deterministic.

    70% planned shapes with batches 1..6 (split over max_batch 4 and padded), 15% unplanned
    shapes (the allocating fallback path), 10% lists of mixed sizes, 5% logits.
    """
    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(calls):
        r = rng.random()
        if r < 0.70:
            h, w = PLANNED[rng.integers(len(PLANNED))]
            plan.append(("segment", int(rng.integers(1, 7)), h, w))
        elif r < 0.85:
            h, w = UNPLANNED[rng.integers(len(UNPLANNED))]
            plan.append(("segment", int(rng.integers(1, 3)), h, w))
        elif r < 0.95:
            plan.append(("list", 3, 0, 0))
        else:
            h, w = PLANNED[rng.integers(len(PLANNED))]
            plan.append(("logits", int(rng.integers(1, 3)), h, w))
    return plan


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print/write its summary; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument(
        "--warmup-fraction",
        type=float,
        default=0.1,
        help="RSS baseline is taken after this fraction of the calls",
    )
    parser.add_argument("--artifact", help="an .ifa.pt file (default: export --preset)")
    parser.add_argument("--preset", default="camvid-r18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument(
        "--check-every",
        type=int,
        default=50,
        help="compare a fixed input's labels to the first result every N calls",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="out/soak.json")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    import ifa_rt
    from ifa_rt import Segmenter

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        artifact = Path(args.artifact) if args.artifact else export_default(Path(tmp), args.preset)
        export_s = time.perf_counter() - t0
        # The engine holds the loaded module: the file may go once it is built.
        seg = Segmenter(artifact, shapes=PLANNED, max_batch=args.max_batch, threads=args.threads)
    rng = np.random.default_rng(args.seed + 1)
    pools = {  # preallocated inputs, so the soak itself does not churn memory
        (h, w): rng.integers(0, 256, (6, h, w, 3), dtype=np.uint8) for h, w in PLANNED + UNPLANNED
    }
    mixed = [pools[PLANNED[0]][0], pools[UNPLANNED[0]][1], pools[PLANNED[1]][2]]
    probe = pools[PLANNED[0]][:3]
    probe_want = seg(probe)
    odd_want = seg(pools[UNPLANNED[1]][:2])

    plan = make_plan(args.calls, args.seed)
    warm = max(1, int(args.calls * args.warmup_fraction))
    samples: list[tuple[int, int]] = []
    mismatches = errors = images = 0
    baseline_stats = None
    t0 = time.perf_counter()
    for i, (kind, b, h, w) in enumerate(tqdm(plan, desc="soak", unit="call", mininterval=2)):
        try:
            if kind == "segment":
                seg(pools[(h, w)][:b])
            elif kind == "list":
                seg(mixed)
            else:
                seg.logits(pools[(h, w)][:b])
            images += b
        except Exception as exc:  # noqa: BLE001 - counted, reported, and fails the run
            errors += 1
            print(f"soak: call {i} ({kind} {b}x{h}x{w}) failed: {exc}", file=sys.stderr)
        if i % args.check_every == 0:
            ok = np.array_equal(seg(probe), probe_want)
            ok = ok and np.array_equal(seg(pools[UNPLANNED[1]][:2]), odd_want)
            mismatches += not ok
        if i + 1 == warm:
            baseline_stats = seg.stats()
        if i + 1 >= warm and (i + 1 - warm) % 100 == 0 or i + 1 == len(plan):
            samples.append((i + 1, rss_bytes()))
    elapsed = time.perf_counter() - t0

    stats = seg.stats()
    base_rss = samples[0][1]
    final_rss = samples[-1][1]
    peak_rss = max(r for _, r in samples)
    xs = np.array([c for c, _ in samples], float)
    ys = np.array([r for _, r in samples], float)
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(samples) > 2 else 0.0
    drift = (final_rss - base_rss) / base_rss
    keys = ["calls", "images", "bucket_runs", "padded_images", "fallback_calls",
            "allocations_after_warmup", "bytes_allocated_after_warmup",
            "cached_allocations_after_warmup"]  # fmt: skip
    result = {
        "artifact": str(artifact) if args.artifact else f"{args.preset} (exported, random weights)",
        "calls": args.calls,
        "images": images,
        "mix": {k: sum(p[0] == k for p in plan) for k in ("segment", "list", "logits")},
        "unplanned_calls": sum(p[0] == "segment" and (p[2], p[3]) in UNPLANNED for p in plan),
        "planned_shapes": PLANNED,
        "unplanned_shapes": UNPLANNED,
        "max_batch": args.max_batch,
        "threads": args.threads,
        "warmup_calls": warm,
        "rss_after_warmup_mib": base_rss / 2**20,
        "rss_final_mib": final_rss / 2**20,
        "rss_peak_mib": peak_rss / 2**20,
        "rss_drift_percent": 100 * drift,
        "rss_slope_kib_per_1000_calls": slope * 1000 / 1024,
        "rss_samples": len(samples),
        "result_checks": args.calls // args.check_every + 1,
        "result_mismatches": int(mismatches),
        "errors": errors,
        "stats": {k: stats[k] for k in keys},
        "stats_after_warmup_window": {k: stats[k] - baseline_stats[k] for k in keys},
        "plan_bytes": seg.plan["total_bytes"],
        "runtime": seg.plan["runtime"],
        "seconds": elapsed,
        "export_seconds": export_s,
        "ifa_rt": ifa_rt.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("planned_shapes", "unplanned_shapes")},
            indent=2,
        )
    )
    ok = errors == 0 and mismatches == 0 and stats["allocations_after_warmup"] == 0
    print(
        f"soak: {args.calls} calls, {images} images in {elapsed:.0f} s; RSS drift after warm-up "
        f"{100 * drift:+.2f}% ({base_rss / 2**20:.1f} -> {final_rss / 2**20:.1f} MiB); "
        f"allocations after warm-up {stats['allocations_after_warmup']}; "
        f"{'OK' if ok else 'FAILED'} -> {out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
