"""`ifa-rt bench`: latency of the runtime on real images (the interleaved benchmark script)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ..bench import bench_artifact, load_images, summarize, time_calls
from ..shapes import parse_shape
from .engine_args import add_engine_arguments, describe_engine


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt bench`."""
    parser.add_argument("model", nargs="?", help="artifact path, bundled model name or preset")
    parser.add_argument("--shape", default="512x1024", help="input HEIGHTxWIDTH (default 512x1024)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=20, help="timed calls (default 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after construction")
    parser.add_argument("--device", default="cpu")
    add_engine_arguments(parser)
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: torch's)"
    )
    parser.add_argument("--optimize", action="store_true", help="CPU: optimize_for_inference")
    parser.add_argument(
        "--data-root",
        type=Path,
        help="real images to time (default: $IFA_RT_DATA, else ~/.local/share/ifa_rt/data)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt bench`: p50/p90/p99 and images/s of one artifact."""
    if not args.model:
        raise ValueError(
            "bench: 'model': expected an artifact path, bundled name or preset, got none"
        )
    if args.batch < 1 or args.reps < 1:
        raise ValueError(f"bench: '--batch'/'--reps': expected >= 1, got {args.batch}/{args.reps}")
    from ..runtime.segmenter import Segmenter

    shape = parse_shape(args.shape)
    # Before the engine is built: a missing data folder fails in a second, not after a compile.
    images, source = load_images(shape, args.batch, root=args.data_root)
    with tempfile.TemporaryDirectory(prefix="ifa-rt-bench-") as tmp:
        path, origin = bench_artifact(args.model, Path(tmp))
        t0 = time.perf_counter()
        seg = Segmenter(
            path,
            device=args.device,
            precision=args.precision,
            max_batch=args.batch,
            shapes=[shape],
            threads=args.threads,
            runtime=args.runtime,
            optimize=args.optimize or None,
        )
        construction_s = time.perf_counter() - t0
        seg.wait_ready()  # time the engine that serves in steady state (tier-up compiles once)
        ready_s = time.perf_counter() - t0
        first_ms = time_calls(seg, images, 1)[0]
        from tqdm import tqdm

        time_calls(seg, images, 0, warmup=args.warmup)
        ms = [
            time_calls(seg, images, 1)[0] for _ in tqdm(range(args.reps), desc="bench", leave=False)
        ]
    s = summarize(ms, args.batch)
    print(
        f"{seg!r}\n{args.model} ({origin}), {args.batch}x{shape[0]}x{shape[1]} {source} images, "
        f"{args.reps} calls"
    )
    print(describe_engine(seg))
    print(
        f"construction {construction_s:.2f} s (ready {ready_s:.2f} s), "
        f"first call {first_ms:.1f} ms ({first_ms / s['p50_ms']:.2f}x p50)"
    )
    print(
        f"p50 {s['p50_ms']:.1f} ms  p90 {s['p90_ms']:.1f} ms  p99 {s['p99_ms']:.1f} ms  "
        f"{s['images_per_s']:.2f} images/s"
    )
    return 0
