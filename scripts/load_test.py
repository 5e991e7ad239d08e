#!/usr/bin/env python
"""Latency and throughput of N concurrent callers: one-at-a-time calls vs dynamic batching.

Modes (each a caller thread loop: send one image, wait for its labels, repeat):
  direct   `seg(image)`: one engine call per image; concurrent calls take turns on the engine
  submit   `seg.submit(image).result()`: the C++ Batcher gathers concurrent requests into one
           batched call (max_batch, max_delay_us)
  http     POST the image as PNG to a running `ifa-rt serve` (--url, loopback only); the
           client decodes the PNG reply
Both in-process modes use the same engine, planned for the size tested, and the cells are
interleaved (every mode per N, N ascending), so each ratio is taken within one run.

Algorithm:
  1. Load the model once (Segmenter, max_batch, planned for --size) and --images real CamVid
     val images resized to --size (random images when the data is absent).
  2. Warm up: every bucket batch size once, through the batcher and directly.
  3. Per N in --callers, per mode: N threads start together and each sends --requests images
     (bounded also by --max-seconds per cell); record each request's latency.
  4. Print a markdown table (p50/p90/p99 latency, images/s, mean batch size, throughput vs
     direct at the same N) and write JSON (--json).

    .venv/bin/python scripts/load_test.py --model camvid --size 360x480 --requests 12
    .venv/bin/python scripts/load_test.py --model camvid --size 360x480 --modes http \\
        --url http://127.0.0.1:8000/
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

import ifa_rt
from ifa_rt.bench import percentile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("IFA_RT_DATA", REPO.parent / "shared" / "data"))
MODES = ("direct", "submit", "http")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="camvid", help="bundled model name or .ifa.pt path")
    p.add_argument("--size", default="360x480", help="HxW of every image (default: 360x480)")
    p.add_argument("--callers", default="1,2,4,8", help="concurrent callers N (default: 1,2,4,8)")
    p.add_argument("--requests", type=int, default=12, help="requests per caller per cell")
    p.add_argument("--max-seconds", type=float, default=60.0, help="bound on one cell's time")
    p.add_argument("--modes", default="direct,submit", help=f"of {', '.join(MODES)}")
    p.add_argument("--max-batch", type=int, default=4, help="engine max_batch (default: 4)")
    p.add_argument("--max-delay-us", type=int, default=2000, help="batcher max_delay_us")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads per call")
    p.add_argument("--images", type=int, default=8, help="distinct images (default: 8)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "camvid" / "images" / "val")
    p.add_argument("--url", default=None, help="a running `ifa-rt serve` (http mode)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    args.callers = [int(n) for n in args.callers.split(",")]
    args.modes = args.modes.split(",")
    args.shape = tuple(int(v) for v in args.size.lower().split("x"))
    if any(m not in MODES for m in args.modes):
        p.error(f"--modes: expected some of {', '.join(MODES)}, got {','.join(args.modes)}")
    if "http" in args.modes:
        host = urllib.parse.urlparse(args.url or "").hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            p.error(f"--url: expected a loopback http URL (http mode), got {args.url!r}")
    if args.requests < 1 or min(args.callers) < 1:
        p.error("--requests and --callers: expected positive counts")
    return args


def load_images(folder: Path, count: int, shape: tuple[int, int]) -> tuple[list[np.ndarray], str]:
    """`count` real images resized to `shape` (random ones if the folder is missing)."""
    paths = sorted(folder.glob("*.jpg"))[:count] if folder.is_dir() else []
    if not paths:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(count)], "random"
    size = (shape[1], shape[0])
    images = [np.array(Image.open(p).convert("RGB").resize(size, Image.BILINEAR)) for p in paths]
    return images, f"CamVid val ({folder})"


def png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (the http mode's request body)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def run_cell(send, n: int, requests: int, images: list, max_seconds: float) -> dict:
    """N threads x `requests` calls of send(image); latencies in ms and wall time."""
    latencies: list[list[float]] = [[] for _ in range(n)]
    errors: list[str] = []
    barrier = threading.Barrier(n + 1)
    deadline = [0.0]

    def caller(t: int) -> None:
        barrier.wait()
        for r in range(requests):
            if time.perf_counter() > deadline[0]:
                break
            t0 = time.perf_counter()
            try:
                send(images[(t * requests + r) % len(images)])
            except Exception as exc:  # reported, not raised: the other callers go on
                errors.append(repr(exc))
                continue
            latencies[t].append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    deadline[0] = time.perf_counter() + max_seconds
    t0 = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join(max_seconds + 60)
    wall = time.perf_counter() - t0
    flat = np.array([v for lat in latencies for v in lat])
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    if flat.size == 0:
        return {"requests": 0, "errors": len(errors)}
    return {
        "requests": int(flat.size),
        "errors": len(errors),
        "wall_s": wall,
        "images_per_s": flat.size / wall,
        "p50_ms": percentile(flat, 0.5),
        "p90_ms": percentile(flat, 0.9),
        "p99_ms": percentile(flat, 0.99),
        "mean_ms": float(flat.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the load test; print the table, write JSON."""
    args = parse_args(argv)
    images, source = load_images(args.data, args.images, args.shape)
    seg = ifa_rt.Segmenter(
        args.model,
        max_batch=args.max_batch,
        shapes=[args.shape],
        threads=args.threads,
        max_delay_us=args.max_delay_us,
    )
    print(f"{seg!r}\nimages: {len(images)} x {args.size} from {source}")
    batches = sorted({2**k for k in range(8) if 2**k < args.max_batch} | {args.max_batch})
    for b in batches:  # warm-up: every bucket through the batcher, and a direct call
        [f.result() for f in [seg.submit(images[i % len(images)]) for i in range(b)]]
    seg(images[0])
    bodies = {id(im): png(im) for im in images} if "http" in args.modes else {}

    def http(image: np.ndarray) -> np.ndarray:
        request = urllib.request.Request(args.url, data=bodies[id(image)], method="POST")
        with urllib.request.urlopen(request, timeout=60) as r:
            return np.array(Image.open(io.BytesIO(r.read())))

    if "http" in args.modes:
        http(images[0])  # warm the server's path
    send = {"direct": seg, "submit": lambda im: seg.submit(im).result(), "http": http}

    rows = []
    for n in args.callers:
        for mode in args.modes:
            before = seg.batcher.stats()
            cell = run_cell(send[mode], n, args.requests, images, args.max_seconds)
            after = seg.batcher.stats()
            runs = after["batches"] - before["batches"]
            if mode == "submit" and runs:
                cell["mean_batch"] = (after["batched_requests"] - before["batched_requests"]) / runs
            else:
                cell["mean_batch"] = 1.0 if mode == "direct" else None
            cell.update(mode=mode, callers=n)
            rows.append(cell)
            print(
                f"N={n} {mode:6s} {cell.get('images_per_s', 0):7.2f} img/s  "
                f"p50 {cell.get('p50_ms', 0):8.1f} ms  p99 {cell.get('p99_ms', 0):8.1f} ms",
                flush=True,
            )
    table = markdown(rows)
    print("\n" + table)
    if args.json:
        info = {
            "model": seg.metadata.get("preset"),
            "runtime": seg.plan["runtime"],
            "size": args.size,
            "images": source,
            "max_batch": args.max_batch,
            "max_delay_us": args.max_delay_us,
            "threads": args.threads,
            "requests_per_caller": args.requests,
            "cpus": os.cpu_count(),
            "machine": platform.platform(),
            "url": args.url,
        }
        args.json.write_text(json.dumps({"config": info, "rows": rows}, indent=2) + "\n")
    seg.batcher.close()
    return 0


def markdown(rows: list[dict]) -> str:
    """The results as a markdown table; throughput relative to `direct` at the same N."""
    direct = {r["callers"]: r.get("images_per_s") for r in rows if r["mode"] == "direct"}
    lines = [
        "| callers N | mode | requests | p50 ms | p90 ms | p99 ms | images/s | mean batch "
        "| vs direct |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if not r.get("requests"):
            lines.append(f"| {r['callers']} | {r['mode']} | 0 | | | | | | |")
            continue
        base = direct.get(r["callers"])
        ratio = f"{r['images_per_s'] / base:.2f}x" if base else ""
        batch = f"{r['mean_batch']:.2f}" if r.get("mean_batch") is not None else ""
        lines.append(
            f"| {r['callers']} | {r['mode']} | {r['requests']} | {r['p50_ms']:.1f} | "
            f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['images_per_s']:.2f} | {batch} | {ratio} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
