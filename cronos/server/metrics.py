"""The server's Prometheus metrics (``GET /metrics``), in a registry of its own: requests by endpoint
and status, their latency, the sizes of the batches decoded, the batches stopped because no one
waited for them any more, and the queue's depth."""
from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics", "CONTENT_TYPE_LATEST"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """Counters and histograms of one server; ``waiting()`` reads the queue's depth when scraped."""

    def __init__(self, waiting: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter("cronos_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("cronos_request_seconds", "Seconds from a request's arrival to its answer",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cronos_batch_sentences", "Sentences (or pairs) decoded together in one batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.abandoned = Counter("cronos_abandoned_batches", "Batches stopped part way: every request in them had "
                                 "timed out or its client had gone", registry=self.registry)
        self.queue = Gauge("cronos_queue_sentences", "Sentences accepted and waiting for a batch",
                           registry=self.registry)
        self.queue.set_function(waiting)

    def answered(self, endpoint: str, status: int, started: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(time.perf_counter() - started)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class MeasuredRequests:
    """ASGI middleware: each HTTP request's status and latency into ``metrics`` (by path, for the
    server's own paths; every other path is ``other``)."""

    def __init__(self, app, metrics: ServerMetrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        endpoint = scope["path"] if scope["path"] in self.paths else "other"

        async def sent(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.answered(endpoint, status, started)
