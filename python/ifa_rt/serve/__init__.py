"""`ifa-rt serve`: an HTTP endpoint around `Segmenter` on Ray Serve (extra: `ifa-rt[serve]`).

    ifa-rt serve camvid --replicas 2 --port 8000 --max-batch 4 --max-delay-ms 10 --shapes 360x480
    curl --data-binary @frame.png http://127.0.0.1:8000/ -o labels.png
    curl --data-binary @frame.jpg 'http://127.0.0.1:8000/?format=json&labels=0'

Starts a local Ray (dashboard off) unless --address names a running cluster, deploys the
replicas (`ifa_rt.serve.app`), prints the URL once every replica is up, and serves until
SIGINT/SIGTERM, then shuts Serve and Ray down. Ray is imported only when serving, so the
runtime never depends on it. The same from Python: `url = start(model, ...)`, then `stop()`.

Limits (`codec.Limits`, each a JSON error): --max-body-mb (413), --max-pixels (413, read from
the image header before decoding), --max-queue per replica (503 + Retry-After). Bound to a
non-loopback host it warns, and a bearer token (--token, or the IFA_RT_SERVE_TOKEN environment
variable, which other users cannot read from the process list) protects it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from typing import Any

from ..shapes import parse_shapes
from .codec import Limits

__all__ = ["configure_parser", "exposure_warning", "run_cli", "start", "stop"]

APP_NAME = "ifa_rt"
TOKEN_ENV = "IFA_RT_SERVE_TOKEN"


def _import_ray():
    """(ray, ray.serve), or RuntimeError saying how to install them."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise RuntimeError(
            f"serve: Ray Serve is not installed ({exc}); install it with "
            "pip install 'ifa-rt[serve]' (or pip install 'ray[serve]')"
        ) from None
    return ray, serve


def start(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    max_batch: int = 4,
    max_delay_ms: float = 10.0,
    num_cpus: int | None = None,
    address: str | None = None,
    limits: Limits | None = None,
    **segmenter: Any,
) -> str:
    """Start Ray (unless running) and Serve, deploy the app; returns its URL once it is up.

    Args:
        model: artifact path or bundled model name.
        host, port: where the HTTP proxy listens (loopback by default).
        replicas, max_batch, max_delay_ms: see `ifa_rt.serve.app.build_app`.
        num_cpus: CPUs of the local Ray started here (default: all); the replicas share them.
        address: a running Ray cluster to deploy into instead of starting a local one.
        limits: request limits and the optional bearer token (defaults: `Limits()`).
        segmenter: more `Segmenter` keyword arguments (shapes, threads, device, precision).
    """
    from ..models import resolve

    path = str(resolve(model, "serve"))  # fail here, not in every replica
    ray, serve = _import_ray()
    from .app import build_app

    cpus = num_cpus or os.cpu_count() or 1
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            # Loopback only: Ray's own processes talk over 127.0.0.1, not the machine's address.
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
            )
    serve.start(http_options={"host": host, "port": port})
    app = build_app(
        path,
        replicas=replicas,
        max_batch=max_batch,
        max_delay_ms=max_delay_ms,
        # Every replica gets a share of the CPUs, so all of them can be placed.
        replica_cpus=cpus / replicas,
        limits=limits,
        **segmenter,
    )
    serve.run(app, name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}/"


def stop() -> None:
    """Shut down Serve (replicas, proxy, controller) and the Ray started by `start`."""
    if "ray" not in sys.modules:
        return  # nothing was started (and importing Ray just to find that out is slow)
    ray, serve = _import_ray()
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def _shapes(text: str) -> list[tuple[int, int]]:
    """'360x480,720x960' -> [(360, 480), (720, 960)]."""
    try:
        return parse_shapes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected HxW sizes separated by commas (e.g. 360x480,720x960), got '{text}'"
        ) from None


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning for a host other machines can reach (None for loopback)."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # a host name: it may resolve to any interface
    if loopback:
        return None
    guard = (
        "requests must carry the bearer token"
        if token
        else f"anyone who can reach it may use it: set {TOKEN_ENV} (or --token) to require a token"
    )
    return f"ifa-rt serve: warning: listening on {host}, not loopback; {guard}"


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
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
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
        )
        if not stopping.is_set():
            print(
                f"ifa-rt serve: {args.model} on {url} ({args.replicas} replica(s), "
                f"max batch {args.max_batch}, max delay {args.max_delay_ms:g} ms); "
                "POST an image, GET for stats; Ctrl-C stops",
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
