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

__all__ = ["exposure_warning", "keep_replica_grpc_on_loopback", "start", "stop"]

APP_NAME = "ifa_rt"
TOKEN_ENV = "IFA_RT_SERVE_TOKEN"
# Ray replaces a loopback node address with the machine's reachable one, so its GCS, raylet,
# agents and workers listen on every interface, unless this flag (Ray's switch for one-machine
# clusters) is off; it is read at import, and inherited by the processes Ray starts.
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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
    if not address:
        _keep_ray_on_loopback()
    ray, serve = _import_ray()
    from .app import build_app

    cpus = num_cpus or os.cpu_count() or 1
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            # Loopback only (with _keep_ray_on_loopback): Ray's processes talk over 127.0.0.1.
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
            )
    limits = limits or Limits()
    serve.start(
        http_options={"host": host, "port": port, "keep_alive_timeout_s": limits.keep_alive_s}
    )
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


def _keep_ray_on_loopback() -> None:
    """Make the local Ray started here listen on loopback only (every one of its ports)."""
    os.environ[RAY_CLUSTER_ENV] = "0"
    if "ray" in sys.modules:  # imported already: the flag was read, set its value too
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def keep_replica_grpc_on_loopback() -> None:
    """In a replica of a local-only Ray: open Serve's inter-deployment gRPC port on loopback.

    Ray Serve's replica binds that port on every interface ("[::]:0", hard-coded in
    ray/serve/_private/replica.py, after the deployment's constructor has run); on a Ray that
    `start` keeps on loopback nothing outside the machine may reach it. If Ray renames the
    function this does nothing, and the listening-socket test of `ifa-rt serve` fails.
    """
    if os.environ.get(RAY_CLUSTER_ENV) != "0":
        return  # a real cluster: other nodes must reach the replica
    from ray.serve._private import replica

    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is None or getattr(bind, "on_loopback", False):
        return

    def bind_on_loopback(server, address: str):
        return bind(server, "127.0.0.1:0" if address == "[::]:0" else address)

    bind_on_loopback.on_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind_on_loopback


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
