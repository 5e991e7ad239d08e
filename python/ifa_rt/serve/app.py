"""The Ray Serve deployment: replicas of a `Segmenter`, Ray's request batching, its endpoints.

    GET  /                 a page to try the model: drop images, see the overlay (page.html)
    POST /                 body: an encoded image, raw or as a multipart file field -> PNG
                           labels with the palette (?palette=0: greyscale, values = classes;
                           ?format=json: histogram + labels, ?labels=0 leaves the labels out)
    GET  /stats            the model (preset, classes, palette) and this replica's counters
    GET  /health, /ready   liveness and readiness (no token needed: they carry no data)
    GET  /metrics          Prometheus metrics of the replica that answers (metrics.py)
    /v2/...                the Open Inference Protocol, KServe v2 (kserve.py)

Each replica loads the artifact itself (a path must exist on every node; a bundled name always
does). Requests that arrive together are gathered by `@serve.batch` (up to `max_batch`, waiting
at most `max_delay_ms`) and run as one list call: the engine batches images of the same size
on its planned buckets. Decoding and the engine call run on threads (the C++ engine releases
the GIL), so the replica's event loop keeps accepting and refusing requests meanwhile.

Every refusal is a JSON `{"error": ...}` with its status (codec.Limits): 401 without the
token, 413 for a body or image over the limits (checked from `Content-Length` and the image
header, before the body or the pixels are read), 415 for formats other than PNG, JPEG, BMP
and WebP, 408 for a body that takes longer than `body_timeout_s` to arrive, 503 with
`Retry-After` when the replica already holds `max_queue` requests with decoded images or
the work ahead would keep a new one waiting past `max_wait_s` (a request takes its slot only
once its body is in and decoded, so slow clients hold none; admission.py), 500 with a request
id when the engine fails (the details go to the server log, not to the client).
Segmentation replies carry `X-IFA-Engine: <runtime> <precision>` and `Server-Timing:
app;dur=<ms>` (body in to reply out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from ray import serve
from ray.serve.config import BackpressureConfig
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..runtime.segmenter import Segmenter
from . import keep_replica_grpc_on_loopback, kserve
from .admission import RETRY_AFTER_S, Admission
from .codec import (
    FORMATS,
    Limits,
    RequestError,
    check_token,
    decode_image,
    encode_png,
    image_bytes,
    labels_json,
)
from .metrics import CONTENT_TYPE, ReplicaMetrics
from .page import render_page

__all__ = ["SegmentDeployment", "build_app"]

log = logging.getLogger("ifa_rt.serve")

REFUSAL_REASONS = {503: "busy", 413: "too_large", 401: "unauthorized", 408: "too_slow"}
Handler = Callable[[Request], Awaitable[Response]]


@serve.deployment(name="ifa_rt")
class SegmentDeployment:
    """One replica: a planned, warmed-up `Segmenter` behind HTTP endpoints."""

    def __init__(
        self, model: str, max_batch: int, max_delay_ms: float, limits: dict, **segmenter: Any
    ):
        keep_replica_grpc_on_loopback()
        self._seg = Segmenter(model, max_batch=max_batch, **segmenter)
        self._meta = self._seg.metadata
        self._palette = self._seg.palette
        self._limits = Limits(**limits)
        self._name = str(self._meta.get("preset") or "ifa_rt")
        # The decorator's values are class-wide; these are this deployment's.
        self.segment_batch.set_max_batch_size(max_batch)
        self.segment_batch.set_batch_wait_timeout_s(max_delay_ms / 1000.0)
        self._batch_sizes = [0] * (max_batch + 1)
        self._admission = Admission(self._limits)
        self._refused = dict.fromkeys([*REFUSAL_REASONS.values(), "bad_request"], 0)
        self._failed = 0
        self._metrics = ReplicaMetrics(self._name, max_batch)
        self._page = render_page(
            self._name, self._seg.classes, self._palette, self._limits.token is not None
        )
        v2 = f"v2/models/{self._name}"
        # (method, path) -> (endpoint name for metrics, handler, needs the token)
        self._routes: dict[tuple[str, str], tuple[str, Handler, bool]] = {
            ("GET", ""): ("page", self._get_page, False),
            ("POST", ""): ("segment", self._post_image, True),
            ("GET", "stats"): ("stats", self._get_stats, True),
            ("GET", "health"): ("health", self._get_health, False),
            ("GET", "ready"): ("ready", self._get_ready, False),
            ("GET", "metrics"): ("metrics", self._get_metrics, True),
            ("GET", "v2"): ("v2", self._get_v2_server, True),
            ("GET", "v2/health/live"): ("v2_health", self._get_health, False),
            ("GET", "v2/health/ready"): ("v2_health", self._get_ready, False),
            ("GET", v2): ("v2_metadata", self._get_v2_model, True),
            ("GET", v2 + "/ready"): ("v2_health", self._get_ready, False),
            ("POST", v2 + "/infer"): ("v2_infer", self._post_v2_infer, True),
        }

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def segment_batch(self, images: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """Labels for the images of one Ray batch, in order; one bad image fails only itself."""
        self._batch_sizes[min(len(images), len(self._batch_sizes) - 1)] += 1
        self._metrics.batch(len(images))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            labels = await loop.run_in_executor(None, self._seg.segment, images)
            self._admission.record_batch(len(images), time.perf_counter() - started)
            return labels
        except Exception:
            # One list call checks every image first, so one bad image fails the call: rerun
            # each alone to give the others their labels and the bad one its own error.
            run = self._segment_or_error
            return [await loop.run_in_executor(None, run, im) for im in images]

    async def __call__(self, request: Request) -> Response:
        """Route the request; every answer, refusals and failures included, is counted."""
        endpoint = "unknown"
        try:
            endpoint, handler, needs_token = self._route(request)
            if needs_token:
                check_token(request.headers.get("authorization"), self._limits.token)
            response = await handler(request)
        except RequestError as exc:
            reason = REFUSAL_REASONS.get(exc.status, "bad_request")
            self._refused[reason] += 1
            self._metrics.refused(reason)
            response = _error(exc.status, str(exc), exc.headers)
        except Exception:  # the engine or anything unforeseen: still a JSON answer
            # The details go to the server log under a request id, not to the client.
            self._failed += 1
            request_id = uuid.uuid4().hex[:16]
            log.exception("serve: request %s failed", request_id)
            response = _error(
                500,
                f"serve: the request failed (request id {request_id}; details in the server log)",
                {"X-Request-Id": request_id},
            )
        seconds = getattr(response, "server_seconds", None)
        self._metrics.observe(endpoint, response.status_code, seconds)
        return response

    def _route(self, request: Request) -> tuple[str, Handler, bool]:
        """(endpoint, handler, needs token) for the request's method and path, else 404/405."""
        path, prefix = request.scope["path"], request.scope.get("root_path", "")
        key = path.removeprefix(prefix).strip("/")
        route = self._routes.get((request.method, key))
        if route is not None:
            return route
        allowed = sorted(method for method, p in self._routes if p == key)
        if allowed:
            raise RequestError(
                405,
                f"serve: method {request.method} on '/{key}': expected {' or '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            )
        if key.startswith("v2/models/"):
            raise RequestError(
                404, f"serve: path '/{key}': this service has one model, '{self._name}'"
            )
        paths = sorted({"/" + p for _, p in self._routes if not p.startswith("v2/")})
        raise RequestError(
            404, f"serve: path '{path}': expected one of {', '.join(paths)} or /v2/..."
        )

    async def _get_page(self, request: Request) -> Response:
        return HTMLResponse(self._page, headers={"Cache-Control": "no-cache"})

    async def _get_stats(self, request: Request) -> Response:
        return JSONResponse(self.info())

    async def _get_health(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def _get_ready(self, request: Request) -> Response:
        # A replica answers only once its engine is planned and warmed up.
        return JSONResponse({"ready": True, "model": self._name, "serving": self._seg.engine})

    async def _get_metrics(self, request: Request) -> Response:
        body = self._metrics.render(self._admission.held, self._seg.engine)
        return Response(body, media_type=CONTENT_TYPE)

    async def _get_v2_server(self, request: Request) -> Response:
        from .. import __version__

        return JSONResponse(
            {"name": "ifa_rt", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def _get_v2_model(self, request: Request) -> Response:
        return JSONResponse(kserve.model_metadata(self._name))

    async def _post_image(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "png").lower()
        if fmt not in FORMATS:
            raise RequestError(
                400, f"serve: query 'format': expected one of {', '.join(FORMATS)}, got '{fmt}'"
            )
        with_palette = _flag(request, "palette")
        body = await self._body(request)
        started = time.perf_counter()
        content_type = request.headers.get("content-type")
        image = await asyncio.get_running_loop().run_in_executor(
            None, lambda: decode_image(image_bytes(body, content_type), self._limits.max_pixels)
        )
        labels = await self._labels(image)
        engine = self._seg.engine
        if fmt == "json":
            reply = labels_json(labels, self._meta["classes"], _flag(request, "labels"))
            reply["model"] = self._meta.get("preset")
            reply["serving"] = engine
            response: Response = JSONResponse(reply)
        else:
            png = encode_png(labels, self._palette if with_palette else None)
            response = Response(png, media_type="image/png")
        return _timed(response, started, engine)

    async def _post_v2_infer(self, request: Request) -> Response:
        body = await self._body(request)
        started = time.perf_counter()
        header = request.headers.get(kserve.HEADER_LENGTH)
        parsed = await asyncio.get_running_loop().run_in_executor(
            None, kserve.parse_infer, body, header, self._limits.max_pixels
        )
        labels = await self._labels(parsed.image)
        reply, headers = kserve.infer_response(labels, self._name, parsed)
        return _timed(Response(reply, headers=headers), started, self._seg.engine)

    async def _body(self, request: Request) -> bytes:
        """The whole body, within the size, time and byte limits (413/408/503 otherwise)."""
        return await self._admission.read_body(request)

    async def _labels(self, image: np.ndarray) -> np.ndarray:
        """The image's labels through Ray's batching, holding a queue slot meanwhile."""
        # Only now, with a whole valid image in hand, does the request take a queue slot.
        self._admission.admit()
        try:
            result = await self.segment_batch(image)
        finally:
            self._admission.release()
        if isinstance(result, ValueError):
            raise RequestError(400, str(result))
        if isinstance(result, Exception):
            raise result
        return result

    def _segment_or_error(self, image: np.ndarray) -> np.ndarray | Exception:
        """One image's labels, or its error as a value (a batch result slot)."""
        try:
            return self._seg.segment(image)
        except Exception as exc:
            return exc

    def info(self) -> dict[str, Any]:
        """Model facts and this replica's counters (Ray batches, refusals, engine stats)."""
        stats = self._seg.stats()
        batches = sum(self._batch_sizes)
        images = sum(k * n for k, n in enumerate(self._batch_sizes))
        return {
            "model": self._meta.get("preset"),
            "serving": stats["engine"],
            "choice": self._seg.plan["choice"],
            "classes": self._meta["classes"],
            "palette": self._palette,
            "batches": batches,
            "mean_batch_size": images / batches if batches else 0.0,
            "batch_sizes": self._batch_sizes,
            "in_progress": self._admission.held,
            "estimated_wait_s": round(self._admission.estimated_wait_s(), 3),
            "refused": dict(self._refused),
            "failed": self._failed,
            "limits": {
                "max_body_bytes": self._limits.max_body_bytes,
                "max_pixels": self._limits.max_pixels,
                "max_queue": self._limits.max_queue,
                "max_wait_s": self._limits.max_wait_s,
                "body_timeout_s": self._limits.body_timeout_s,
                "max_buffered_bytes": self._limits.max_buffered_bytes,
                "token": self._limits.token is not None,
            },
            "engine": {k: stats[k] for k in ("calls", "images", "bucket_runs", "fallback_calls")},
        }


def _flag(request: Request, name: str) -> bool:
    """A query flag that is on unless given as 0/false/no."""
    return request.query_params.get(name, "1").lower() not in ("0", "false", "no")


def _timed(response: Response, started: float, engine: str) -> Response:
    """The response with its server time (`Server-Timing`, kept for the metrics) and engine."""
    seconds = time.perf_counter() - started
    response.headers["Server-Timing"] = f"app;dur={seconds * 1000:.1f}"
    response.headers["X-IFA-Engine"] = engine
    response.server_seconds = seconds  # type: ignore[attr-defined]
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def build_app(
    model: str,
    *,
    replicas: int = 1,
    max_batch: int = 4,
    max_delay_ms: float = 10.0,
    replica_cpus: float = 1.0,
    limits: Limits | None = None,
    **segmenter: Any,
) -> serve.Application:
    """The bound application: `replicas` copies of the deployment.

    Args:
        model: artifact path or bundled model name, loaded by each replica.
        replicas: number of replicas (each its own process and engine).
        max_batch: Ray batch size and the engine's max_batch (planned buckets 1, 2, 4, ..).
        max_delay_ms: how long Ray waits to fill a batch.
        replica_cpus: CPUs Ray reserves per replica (fractions allowed).
        limits: request limits and the optional token (codec.Limits; defaults if None).
        segmenter: more `Segmenter` keyword arguments (shapes, threads, device, precision).
    """
    limits = limits or Limits()
    json.dumps(segmenter)  # must travel to the replicas as plain data
    return SegmentDeployment.options(
        num_replicas=replicas,
        # Each replica refuses its own excess (a JSON 503), so Ray must let through every
        # request it may hold: those still sending their body (which hold no queue slot, so
        # slow clients cannot lock fast ones out), the queue, and GETs. Ray's own queue in
        # front of the replicas is a bounded backstop (a plain text 503).
        max_ongoing_requests=limits.max_reading + limits.max_queue + 4,
        max_queued_requests=(4 * limits.max_queue + 16) * replicas,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
        ray_actor_options={"num_cpus": replica_cpus},
    ).bind(model, max_batch, max_delay_ms, dataclasses.asdict(limits), **segmenter)
