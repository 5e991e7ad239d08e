"""`ifa-rt serve`: an HTTP endpoint around `Segmenter` on Ray Serve (extra: `ifa-rt[serve]`).

    ifa-rt serve camvid --replicas 2 --port 8000 --max-batch 4 --max-delay-ms 10 --shapes 360x480
    open http://127.0.0.1:8000/ in a browser: a page to try it (endpoints: `app`)
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

import ipaddress
import os
import sys
from typing import Any

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
    from ..bundled import resolve

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
