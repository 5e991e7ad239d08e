"""The Ray Serve deployment: replicas of a `Segmenter`, Ray's request batching, one endpoint.

    POST /            body: an encoded image -> PNG labels (?format=json: histogram + labels,
                      ?labels=0 leaves the labels out of the JSON)
    GET  /            the model (preset, classes, palette) and this replica's counters

Each replica loads the artifact itself (a path must exist on every node; a bundled name always
does). Requests that arrive together are gathered by `@serve.batch` (up to `max_batch`, waiting
at most `max_delay_ms`) and run as one list call: the engine batches images of the same size
on its planned buckets. Decoding and the engine call run on threads (the C++ engine releases
the GIL), so the replica's event loop keeps accepting and refusing requests meanwhile.

Every refusal is a JSON `{"error": ...}` with its status (codec.Limits): 401 without the
token, 413 for a body or image over the limits (checked from `Content-Length` and the image
header, before the body or the pixels are read), 415 for formats other than PNG, JPEG, BMP
and WebP, 408 for a body that takes longer than `body_timeout_s` to arrive, 503 with
`Retry-After` when the replica already holds `max_queue` requests with decoded images (a
request takes its slot only then, so slow clients hold none), 500 with a request id when the
engine fails (the details go to the server log, not to the client).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import uuid
from typing import Any

import numpy as np
from ray import serve
from ray.serve.config import BackpressureConfig
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..segmenter import Segmenter
from .codec import (
    FORMATS,
    Limits,
    RequestError,
    body_too_large,
    check_content_length,
    check_token,
    decode_image,
    encode_png,
    labels_json,
)

__all__ = ["SegmentDeployment", "build_app"]

log = logging.getLogger("ifa_rt.serve")

RETRY_AFTER_S = 1


@serve.deployment(name="ifa_rt")
class SegmentDeployment:
    """One replica: a planned, warmed-up `Segmenter` behind an HTTP endpoint."""

    def __init__(
        self, model: str, max_batch: int, max_delay_ms: float, limits: dict, **segmenter: Any
    ):
        self._seg = Segmenter(model, max_batch=max_batch, **segmenter)
        self._meta = self._seg.metadata
        self._palette = self._seg.palette
        self._limits = Limits(**limits)
        # The decorator's values are class-wide; these are this deployment's.
        self.segment_batch.set_max_batch_size(max_batch)
        self.segment_batch.set_batch_wait_timeout_s(max_delay_ms / 1000.0)
        self._batch_sizes = [0] * (max_batch + 1)
        self._held = 0  # POSTs admitted and not yet answered
        self._refused = {
            "busy": 0,
            "too_large": 0,
            "unauthorized": 0,
            "too_slow": 0,
            "bad_request": 0,
        }
        self._failed = 0

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def segment_batch(self, images: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """Labels for the images of one Ray batch, in order; one bad image fails only itself."""
        self._batch_sizes[min(len(images), len(self._batch_sizes) - 1)] += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self._seg.segment, images)
        except Exception:
            # One list call checks every image first, so one bad image fails the call: rerun
            # each alone to give the others their labels and the bad one its own error.
            run = self._segment_or_error
            return [await loop.run_in_executor(None, run, im) for im in images]

    async def __call__(self, request: Request) -> Response:
        """POST: segment the body's image; GET: model facts and counters; errors as JSON."""
        try:
            check_token(request.headers.get("authorization"), self._limits.token)
            return await self._handle(request)
        except RequestError as exc:
            self._count_refusal(exc.status)
            return _error(exc.status, str(exc), exc.headers)
        except Exception:  # the engine or anything unforeseen: still a JSON answer
            # The details go to the server log under a request id, not to the client.
            self._failed += 1
            request_id = uuid.uuid4().hex[:16]
            log.exception("serve: request %s failed", request_id)
            return _error(
                500,
                f"serve: the request failed (request id {request_id}; details in the server log)",
                {"X-Request-Id": request_id},
            )

    async def _handle(self, request: Request) -> Response:
        path, prefix = request.scope["path"], request.scope.get("root_path", "")
        if path.removeprefix(prefix).strip("/"):
            raise RequestError(404, f"serve: path '{path}': expected '/'")
        if request.method == "GET":
            return JSONResponse(self.info())
        if request.method != "POST":
            raise RequestError(405, f"serve: method {request.method}: expected GET or POST")
        fmt = request.query_params.get("format", "png").lower()
        if fmt not in FORMATS:
            raise RequestError(
                400, f"serve: query 'format': expected one of {', '.join(FORMATS)}, got '{fmt}'"
            )
        limits = self._limits
        check_content_length(request.headers.get("content-length"), limits.max_body_bytes)
        body = await _read_body(request, limits.max_body_bytes, limits.body_timeout_s)
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, decode_image, body, limits.max_pixels)
        # Only now, with a whole valid image in hand, does the request take a queue slot.
        if self._held >= limits.max_queue:
            raise RequestError(
                503,
                f"serve: replica busy: expected fewer than {limits.max_queue} requests "
                "in progress, got that many; retry later",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        self._held += 1
        try:
            return await self._segment(request, fmt, image)
        finally:
            self._held -= 1

    async def _segment(self, request: Request, fmt: str, image: np.ndarray) -> Response:
        result = await self.segment_batch(image)
        if isinstance(result, ValueError):
            raise RequestError(400, str(result))
        if isinstance(result, Exception):
            raise result
        if fmt == "json":
            with_labels = request.query_params.get("labels", "1").lower() not in (
                "0",
                "false",
                "no",
            )
            reply = labels_json(result, self._meta["classes"], with_labels)
            reply["model"] = self._meta.get("preset")
            reply["serving"] = self._seg.stats()["engine"]
            return JSONResponse(reply, headers=self._engine_header())
        return Response(
            encode_png(result, self._palette), media_type="image/png", headers=self._engine_header()
        )

    def _engine_header(self) -> dict[str, str]:
        """`X-IFA-Engine: <runtime> <precision>`: the engine serving now (it changes once a
        background tier-up swaps the compiled engine in)."""
        return {"X-IFA-Engine": self._seg.stats()["engine"]}

    def _segment_or_error(self, image: np.ndarray) -> np.ndarray | Exception:
        """One image's labels, or its error as a value (a batch result slot)."""
        try:
            return self._seg.segment(image)
        except Exception as exc:
            return exc

    def _count_refusal(self, status: int) -> None:
        kind = {503: "busy", 413: "too_large", 401: "unauthorized", 408: "too_slow"}.get(
            status, "bad_request"
        )
        self._refused[kind] += 1

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
            "in_progress": self._held,
            "refused": dict(self._refused),
            "failed": self._failed,
            "limits": {
                "max_body_bytes": self._limits.max_body_bytes,
                "max_pixels": self._limits.max_pixels,
                "max_queue": self._limits.max_queue,
                "body_timeout_s": self._limits.body_timeout_s,
                "token": self._limits.token is not None,
            },
            "engine": {k: stats[k] for k in ("calls", "images", "bucket_runs", "fallback_calls")},
        }


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, read chunk by chunk and abandoned as soon as it passes `limit` bytes (413)
    or takes longer than `timeout_s` seconds in all (408)."""
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit, size)
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise RequestError(
            408,
            f"serve: request body: expected the whole body within {timeout_s:g} s, "
            f"got {size} bytes",
            {"Connection": "close"},
        ) from None
    return b"".join(chunks)


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
        # Each replica refuses its own excess (a JSON 503); Ray must let that many through
        # (plus GETs). Ray's own queue in front of the replicas is a bounded backstop (a plain
        # text 503): requests wait there briefly while Ray picks a replica, so it is roomier.
        # Ray also refuses to batch more than a replica may hold at once.
        max_ongoing_requests=max(limits.max_queue + 4, 2 * max_batch),
        max_queued_requests=(4 * limits.max_queue + 16) * replicas,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
        ray_actor_options={"num_cpus": replica_cpus},
    ).bind(model, max_batch, max_delay_ms, dataclasses.asdict(limits), **segmenter)
