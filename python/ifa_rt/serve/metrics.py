"""Prometheus metrics of one replica (`GET /metrics`, text exposition format).

Each replica keeps its own registry and labels its series with `replica`: a scrape through
the HTTP proxy reaches one replica, so with several replicas scrape each (or sum by `replica`
over scrapes); the counters are monotonic per replica.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "ReplicaMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds: from a camera frame on a fast engine (~10 ms) to a 4K frame on a busy replica.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2, 5, 10)


class ReplicaMetrics:
    """Requests, latency, rejections, queue depth and the serving engine of one replica."""

    def __init__(self, model: str, max_batch: int):
        self.registry = CollectorRegistry(auto_describe=True)
        replica = {"replica": f"{os.getpid()}"}
        self._replica = replica
        self.requests = Counter(
            "ifa_rt_requests",
            "Requests answered, by endpoint and HTTP status",
            ["replica", "endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ifa_rt_request_seconds",
            "Server time of segmentation requests (body in to response out), by endpoint",
            ["replica", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "ifa_rt_rejections",
            "Requests refused, by reason (busy, too_large, unauthorized, too_slow, bad_request)",
            ["replica", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "ifa_rt_queue_depth",
            "Requests with a decoded image this replica holds (waiting for a batch or running)",
            ["replica"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ifa_rt_batch_size",
            "Images per engine call formed by request batching",
            ["replica"],
            buckets=tuple(range(1, max_batch + 1)),
            registry=self.registry,
        )
        self.engine = Gauge(
            "ifa_rt_engine_info",
            "1 for the engine serving now (runtime and precision change after a tier-up)",
            ["replica", "model", "runtime", "precision"],
            registry=self.registry,
        )
        self._model = model
        self._engine: tuple[str, str] | None = None

    def observe(self, endpoint: str, code: int, seconds: float | None) -> None:
        """Count one answered request; `seconds` only for requests that reached the engine."""
        self.requests.labels(endpoint=endpoint, code=str(code), **self._replica).inc()
        if seconds is not None:
            self.latency.labels(endpoint=endpoint, **self._replica).observe(seconds)

    def refused(self, reason: str) -> None:
        """Count one refusal by its reason."""
        self.rejections.labels(reason=reason, **self._replica).inc()

    def batch(self, size: int) -> None:
        """Record the size of one batch handed to the engine."""
        self.batch_size.labels(**self._replica).observe(size)

    def render(self, queue_depth: int, engine: str) -> bytes:
        """The exposition text, with the queue depth and the engine as of now."""
        self.queue_depth.labels(**self._replica).set(queue_depth)
        runtime, _, precision = engine.partition(" ")
        if self._engine != (runtime, precision):
            if self._engine is not None:
                self.engine.remove(self._replica["replica"], self._model, *self._engine)
            self._engine = (runtime, precision)
            self.engine.labels(
                model=self._model, runtime=runtime, precision=precision, **self._replica
            ).set(1)
        return generate_latest(self.registry)
