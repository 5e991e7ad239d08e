"""Soak test: many calls mixing planned and unplanned shapes and batch sizes on one Segmenter.

Reports the resident memory (RSS) after warm-up and its growth to the end (a service fed
images of every size must not grow: goal < 1% drift, and at most --max-growth-mib), the
allocation counters of `stats()`, and that every checked result stayed identical to the
first one. Prints a summary and writes it, with the RSS curve, as JSON (docs/reliability.md
records runs).

    python scripts/soak.py                                 # 10,000 calls, bundled camvid
    python scripts/soak.py --calls 2000 --sizes 150 --artifact path/to/model.ifa.pt
    python scripts/soak.py --preset camvid-r18             # a random-weight export instead

Unplanned calls draw from --sizes distinct sizes (seeded, 40..200 x 40..264 pixels), cut as
views from preallocated images, so the soak itself does not churn memory.
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
MAX_SIDE = (200, 264)  # unplanned sizes are drawn up to this (and from 40 up)


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


def unplanned_sizes(count: int, seed: int) -> list[tuple[int, int]]:
    """`count` distinct (h, w), none planned, deterministic."""
    rng = np.random.default_rng(seed + 7)
    sizes: dict[tuple[int, int], None] = {}
    while len(sizes) < count:
        size = (int(rng.integers(40, MAX_SIDE[0] + 1)), int(rng.integers(40, MAX_SIDE[1] + 1)))
        if size not in PLANNED:
            sizes[size] = None
    return list(sizes)


def make_plan(
    calls: int, seed: int, unplanned: list[tuple[int, int]]
) -> list[tuple[str, int, int, int]]:
    """The call mix: (kind, batch, height, width) per call, deterministic.

    70% planned shapes with batches 1..6 (split over max_batch 4), 15% unplanned shapes (the
    fallback path, cycling through every size so each comes back after the LRU dropped it),
    10% lists of mixed sizes, 5% logits.
    """
    rng = np.random.default_rng(seed)
    plan = []
    next_unplanned = 0
    for _ in range(calls):
        r = rng.random()
        if r < 0.70:
            h, w = PLANNED[rng.integers(len(PLANNED))]
            plan.append(("segment", int(rng.integers(1, 7)), h, w))
        elif r < 0.85:
            h, w = unplanned[next_unplanned % len(unplanned)]
            next_unplanned += 1
            plan.append(("segment", int(rng.integers(1, 3)), h, w))
        elif r < 0.95:
            plan.append(("list", 3, 0, 0))
        else:
            h, w = PLANNED[rng.integers(len(PLANNED))]
            plan.append(("logits", int(rng.integers(1, 3)), h, w))
    return plan


def plot_rss(result: dict, samples: list[tuple[int, int]], warm: int, path: Path) -> None:
    """The RSS curve over the run, the end of warm-up marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot([c for c, _ in samples], [r / 2**20 for _, r in samples], lw=1.2)
    ax.axvline(warm, color="grey", ls="--", lw=0.8, label="end of warm-up")
    ax.set_xlabel("calls")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, max(r for _, r in samples) / 2**20 * 1.15)
    ax.set_title(
        f"soak: {result['artifact']}, {result['calls']} calls, "
        f"{result['unplanned_sizes']} unplanned sizes, shape_cache {result['shape_cache']}",
        fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    parser.add_argument(
        "--artifact",
        help="an .ifa.pt file or bundled model name (default: camvid, unless --preset)",
    )
    parser.add_argument("--preset", help="export this preset with random weights instead")
    parser.add_argument(
        "--sizes", type=int, default=120, help="distinct unplanned sizes (default: 120)"
    )
    parser.add_argument(
        "--shape-cache", type=int, default=None, help="Segmenter shape_cache (default: its own)"
    )
    parser.add_argument(
        "--max-growth-mib",
        type=float,
        default=64.0,
        help="fail if the RSS peak after warm-up exceeds the warm-up's peak by more (default: 64)",
    )
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
    parser.add_argument("--plot", default=None, help="write the RSS curve as a PNG here")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    import ifa_rt
    from ifa_rt import Segmenter
    from ifa_rt.bundled import resolve

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.preset and not args.artifact:
            artifact = export_default(Path(tmp), args.preset)
        else:
            artifact = resolve(args.artifact or "camvid", "soak")
        export_s = time.perf_counter() - t0
        # The engine holds the loaded module: the file may go once it is built.
        options = {"shape_cache": args.shape_cache} if args.shape_cache is not None else {}
        seg = Segmenter(
            artifact, shapes=PLANNED, max_batch=args.max_batch, threads=args.threads, **options
        )
    rng = np.random.default_rng(args.seed + 1)
    # Preallocated inputs, so the soak itself does not churn memory; unplanned images are
    # views cut from one large batch (non-contiguous: the engine gathers them).
    big = rng.integers(0, 256, (6, *MAX_SIDE, 3), dtype=np.uint8)
    unplanned = unplanned_sizes(args.sizes, args.seed)
    planned = {(h, w): np.ascontiguousarray(big[:, :h, :w]) for h, w in PLANNED}

    def batch_of(h: int, w: int, b: int) -> np.ndarray:
        return planned[(h, w)][:b] if (h, w) in planned else big[:b, :h, :w]

    mixed = [
        batch_of(*PLANNED[0], 1)[0],
        batch_of(*unplanned[0], 2)[1],
        batch_of(*PLANNED[1], 3)[2],
    ]
    probe = batch_of(*PLANNED[0], 3)
    probe_want = seg(probe)
    odd = batch_of(*unplanned[-1], 2)
    odd_want = seg(odd)

    plan = make_plan(args.calls, args.seed, unplanned)
    warm = max(1, int(args.calls * args.warmup_fraction))
    samples: list[tuple[int, int]] = []
    mismatches = errors = images = 0
    baseline_stats = None
    t0 = time.perf_counter()
    for i, (kind, b, h, w) in enumerate(tqdm(plan, desc="soak", unit="call", mininterval=2)):
        try:
            if kind == "segment":
                seg(batch_of(h, w, b))
            elif kind == "list":
                seg(mixed)
            else:
                seg.logits(batch_of(h, w, b))
            images += b
        except Exception as exc:  # noqa: BLE001 - counted, reported, and fails the run
            errors += 1
            print(f"soak: call {i} ({kind} {b}x{h}x{w}) failed: {exc}", file=sys.stderr)
        if i % args.check_every == 0:
            ok = np.array_equal(seg(probe), probe_want)
            ok = ok and np.array_equal(seg(odd), odd_want)
            mismatches += not ok
        if i + 1 == warm:
            baseline_stats = seg.stats()
        if (i + 1) % 50 == 0 or i + 1 in (warm, len(plan)):
            samples.append((i + 1, rss_bytes()))
    elapsed = time.perf_counter() - t0
    # Growth is judged peak to peak: the fallback path's activations go back to malloc, so
    # single samples dip and rise by tens of MiB; a leak raises every later peak.
    warm_peak = max(r for c, r in samples if c <= warm)
    later_peak = max((r for c, r in samples if c > warm), default=warm_peak)
    growth = (later_peak - warm_peak) / 2**20
    all_samples = samples
    samples = [(c, r) for c, r in samples if c >= warm]

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
        "artifact": f"{args.preset} (exported, random weights)"
        if args.preset and not args.artifact
        else str(args.artifact or "camvid"),
        "calls": args.calls,
        "images": images,
        "mix": {k: sum(p[0] == k for p in plan) for k in ("segment", "list", "logits")},
        "unplanned_calls": sum(p[0] == "segment" and (p[2], p[3]) not in PLANNED for p in plan),
        "planned_shapes": PLANNED,
        "unplanned_sizes": len(unplanned),
        "shape_cache": seg.stats().get("shape_cache"),
        "max_batch": args.max_batch,
        "threads": args.threads,
        "warmup_calls": warm,
        "rss_after_warmup_mib": base_rss / 2**20,
        "rss_final_mib": final_rss / 2**20,
        "rss_peak_mib": peak_rss / 2**20,
        "rss_drift_percent": 100 * drift,
        "rss_slope_kib_per_1000_calls": slope * 1000 / 1024,
        "rss_peak_during_warmup_mib": warm_peak / 2**20,
        "rss_growth_mib": growth,
        "rss_curve_mib": [[c, round(r / 2**20, 1)] for c, r in samples],
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
    if args.plot:
        plot_rss(result, all_samples, warm, Path(args.plot))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("planned_shapes", "rss_curve_mib")},
            indent=2,
        )
    )
    growth_ok = growth <= args.max_growth_mib
    ok = errors == 0 and mismatches == 0 and growth_ok
    print(
        f"soak: {args.calls} calls, {images} images in {elapsed:.0f} s; RSS drift after warm-up "
        f"{100 * drift:+.2f}% ({base_rss / 2**20:.1f} -> {final_rss / 2**20:.1f} MiB, "
        f"peak {peak_rss / 2**20:.1f} vs {warm_peak / 2**20:.1f} in warm-up: {growth:+.1f} MiB, "
        f"limit +{args.max_growth_mib:g}); "
        f"{len(unplanned)} unplanned sizes; "
        f"allocations after warm-up {stats['allocations_after_warmup']}; "
        f"{'OK' if ok else 'FAILED'} -> {out}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
