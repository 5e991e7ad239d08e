"""`ifa-rt serve`: serve a model over HTTP with Ray Serve."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..serve import TOKEN_ENV, exposure_warning, start, stop
from ..serve.codec import Limits
from ..shapes import parse_shapes
from .engine_args import add_engine_arguments


def _shapes(text: str) -> list[tuple[int, int]]:
    """'360x480,720x960' -> [(360, 480), (720, 960)]."""
    try:
        return parse_shapes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HxW sizes separated by commas (e.g. 360x480,720x960), got '{text}'"
        ) from None


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
        return value

    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt serve`."""
    parser.add_argument("model", help="bundled model name or .ifa.pt path")
    parser.add_argument("--replicas", type=_positive(int), default=1, help="replicas (default: 1)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument(
        "--max-batch",
        type=_positive(int),
        default=4,
        help="requests per Ray batch and the engine's max_batch (default: 4)",
    )
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=10.0,
        help="longest wait to fill a batch, in ms (default: 10)",
    )
    parser.add_argument(
        "--shapes",
        type=_shapes,
        default=None,
        help="input sizes to plan buckets for, e.g. 360x480 (others run on the fallback path)",
    )
    parser.add_argument(
        "--threads",
        type=_positive(int),
        default=None,
        help="intra-op threads per replica (default: CPUs / replicas)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_engine_arguments(parser)
    defaults = Limits()
    parser.add_argument(
        "--max-body-mb",
        type=_positive(float),
        default=defaults.max_body_bytes / 2**20,
        help="largest request body in MiB, from Content-Length or as read (default: 64)",
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive(int),
        default=defaults.max_pixels,
        help="largest image in pixels, checked before decoding (default: 4096x4096)",
    )
    parser.add_argument(
        "--max-queue",
        type=_positive(int),
        default=defaults.max_queue,
        help="requests a replica holds at once; more get 503 + Retry-After (default: 32)",
    )
    parser.add_argument(
        "--max-wait-s",
        type=_positive(float),
        default=defaults.max_wait_s,
        help="engine work a new request may find ahead of it (requests ahead x measured time "
        "per image); more get 503 + Retry-After (default: 1)",
    )
    parser.add_argument(
        "--max-buffered-mb",
        type=_positive(float),
        default=defaults.max_buffered_bytes / 2**20,
        help="bytes of bodies still arriving a replica buffers at once; more get 503 "
        "(default: 512)",
    )
    parser.add_argument(
        "--keep-alive-s",
        type=_positive(int),
        default=defaults.keep_alive_s,
        help="seconds an idle keep-alive connection stays open (default: 5)",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=_positive(float),
        default=defaults.body_timeout_s,
        help="seconds a request body may take to arrive; slower ones get 408 (default: 10)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}, else none)",
    )
    parser.add_argument(
        "--num-cpus", type=_positive(int), default=None, help="CPUs of the local Ray (default: all)"
    )
    parser.add_argument(
        "--address", default=None, help="deploy into this running Ray cluster instead"
    )


def run_cli(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM, then shut everything down; 0 on a clean stop."""
    if not 0 < args.port < 65536:
        raise ValueError(f"serve: '--port': expected 1..65535, got {args.port}")
    if args.max_delay_ms < 0:
        raise ValueError(f"serve: '--max-delay-ms': expected >= 0, got {args.max_delay_ms}")
    cpus = args.num_cpus or os.cpu_count() or 1
    threads = args.threads or max(1, cpus // args.replicas)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        max_wait_s=args.max_wait_s,
        body_timeout_s=args.body_timeout_s,
        max_buffered_bytes=int(args.max_buffered_mb * 2**20),
        keep_alive_s=args.keep_alive_s,
        token=token,
    )
    warning = exposure_warning(args.host, token)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    stopping = threading.Event()
    # Handlers first: a signal during the (long) start still ends in a clean shutdown.
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        url = start(
            args.model,
            host=args.host,
            port=args.port,
            replicas=args.replicas,
            max_batch=args.max_batch,
            max_delay_ms=args.max_delay_ms,
            num_cpus=args.num_cpus,
            address=args.address,
            limits=limits,
            shapes=args.shapes,
            threads=threads,
            device=args.device,
            precision=args.precision,
            runtime=args.runtime,
        )
        if not stopping.is_set():
            print(
                f"ifa-rt serve: {args.model} on {url} ({args.replicas} replica(s), "
                f"max batch {args.max_batch}, max delay {args.max_delay_ms:g} ms); "
                "open it in a browser or POST an image (GET /stats: counters); Ctrl-C stops",
                flush=True,
            )
        while not stopping.wait(0.5):
            pass
    finally:
        print("ifa-rt serve: shutting down", file=sys.stderr, flush=True)
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("ifa-rt serve: stopped", flush=True)
    return 0
