"""The Ray Serve deployment: replicas of a `Segmenter`, Ray's request batching, one endpoint.

    POST /            body: an encoded image -> PNG labels (?format=json: histogram + labels,
                      ?labels=0 leaves the labels out of the JSON)
    GET  /            the model (preset, classes, palette) and this replica's batching counters

Each replica loads the artifact itself (a path must exist on every node; a bundled name always
does). Requests that arrive together are gathered by `@serve.batch` (up to `max_batch`, waiting
at most `max_delay_ms`) and run as one list call: the engine batches images of the same size
on its planned buckets. The call runs on a thread (the C++ engine releases the GIL), so the
replica's event loop keeps accepting requests for the next batch meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..segmenter import Segmenter
from .codec import FORMATS, decode_image, encode_png, labels_json

__all__ = ["SegmentDeployment", "build_app"]


@serve.deployment(name="ifa_rt")
class SegmentDeployment:
    """One replica: a planned, warmed-up `Segmenter` behind an HTTP endpoint."""

    def __init__(self, model: str, max_batch: int, max_delay_ms: float, **segmenter: Any):
        self._seg = Segmenter(model, max_batch=max_batch, **segmenter)
        self._meta = self._seg.metadata
        self._palette = self._seg.palette
        # The decorator's values are class-wide; these are this deployment's.
        self.segment_batch.set_max_batch_size(max_batch)
        self.segment_batch.set_batch_wait_timeout_s(max_delay_ms / 1000.0)
        self._batch_sizes = [0] * (max_batch + 1)

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def segment_batch(self, images: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """Labels for the images of one Ray batch, in order; one bad image fails only itself."""
        self._batch_sizes[min(len(images), len(self._batch_sizes) - 1)] += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self._seg.segment, images)
        except ValueError:
            # One list call checks every image first, so one bad image fails the call: rerun
            # each alone to give the others their labels and the bad one its own error.
            run = self._segment_or_error
            return [await loop.run_in_executor(None, run, im) for im in images]

    async def __call__(self, request: Request) -> Response:
        """POST: segment the body's image; GET: model facts and batching counters."""
        path, prefix = request.scope["path"], request.scope.get("root_path", "")
        if path.removeprefix(prefix).strip("/"):
            return _error(404, f"serve: path '{path}': expected '/'")
        if request.method == "GET":
            return JSONResponse(self.info())
        if request.method != "POST":
            return _error(405, f"serve: method {request.method}: expected GET or POST")
        fmt = request.query_params.get("format", "png").lower()
        if fmt not in FORMATS:
            return _error(
                400, f"serve: query 'format': expected one of {', '.join(FORMATS)}, got '{fmt}'"
            )
        try:
            image = decode_image(await request.body())
        except ValueError as exc:
            return _error(400, str(exc))
        result = await self.segment_batch(image)
        if isinstance(result, ValueError):
            return _error(400, str(result))
        if isinstance(result, Exception):
            return _error(500, str(result))
        if fmt == "json":
            with_labels = request.query_params.get("labels", "1").lower() not in (
                "0",
                "false",
                "no",
            )
            body = labels_json(result, self._meta["classes"], with_labels)
            body["model"] = self._meta.get("preset")
            return JSONResponse(body)
        return Response(encode_png(result, self._palette), media_type="image/png")

    def _segment_or_error(self, image: np.ndarray) -> np.ndarray | Exception:
        """One image's labels, or its error as a value (a batch result slot)."""
        try:
            return self._seg.segment(image)
        except (ValueError, RuntimeError) as exc:
            return exc

    def info(self) -> dict[str, Any]:
        """Model facts and this replica's counters (Ray batches and engine stats)."""
        stats = self._seg.stats()
        batches = sum(self._batch_sizes)
        images = sum(k * n for k, n in enumerate(self._batch_sizes))
        return {
            "model": self._meta.get("preset"),
            "classes": self._meta["classes"],
            "palette": self._palette,
            "batches": batches,
            "mean_batch_size": images / batches if batches else 0.0,
            "batch_sizes": self._batch_sizes,
            "engine": {k: stats[k] for k in ("calls", "images", "bucket_runs", "fallback_calls")},
        }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(
    model: str,
    *,
    replicas: int = 1,
    max_batch: int = 4,
    max_delay_ms: float = 10.0,
    replica_cpus: float = 1.0,
    **segmenter: Any,
) -> serve.Application:
    """The bound application: `replicas` copies of the deployment.

    Args:
        model: artifact path or bundled model name, loaded by each replica.
        replicas: number of replicas (each its own process and engine).
        max_batch: Ray batch size and the engine's max_batch (planned buckets 1, 2, 4, ..).
        max_delay_ms: how long Ray waits to fill a batch.
        replica_cpus: CPUs Ray reserves per replica (fractions allowed).
        segmenter: more `Segmenter` keyword arguments (shapes, threads, device, precision).
    """
    json.dumps(segmenter)  # must travel to the replicas as plain data
    return SegmentDeployment.options(
        num_replicas=replicas,
        # Ray refuses to batch more than a replica may hold at once; leave room for the next.
        max_ongoing_requests=max(2 * max_batch, 8),
        ray_actor_options={"num_cpus": replica_cpus},
    ).bind(model, max_batch, max_delay_ms, **segmenter)
