"""Prometheus metrics of one engine instance (one registry per app: tests run many side by side)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class QueueMetrics:
    """The labelled children of one queue kind, resolved once (``labels()`` costs microseconds)."""

    depth: Any
    batch_size: Any
    queue_wait: Any
    compute: Any
    end_to_end: Any


class HttpFigures:
    """Requests counted by route template and status, and their latency: ``http_requests`` and
    ``http_latency`` are set by the subclass (an engine's registry, or an HTTP worker's)."""

    http_requests: Counter
    http_latency: Histogram

    def __init__(self) -> None:
        self._http: dict[tuple[str, str, str], tuple[Any, Any]] = {}  # labelled children, resolved once

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        children = self._http.get(key)
        if children is None:
            children = self._http[key] = (
                self.http_requests.labels(method, route, key[2]),
                self.http_latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class Telemetry(HttpFigures):
    def __init__(self) -> None:
        super().__init__()
        self._queues: dict[str, QueueMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "arrwdb_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "arrwdb_http_request_seconds", "HTTP request latency", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("arrwdb_queue_depth", "Requests waiting, per queue kind", ["queue"], registry=r)
        self.batch_size = Histogram(
            "arrwdb_batch_size", "Items per device batch", ["queue"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "arrwdb_queue_wait_seconds", "Time from admission to batch start", ["queue"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute = Histogram(
            "arrwdb_batch_compute_seconds",
            "Device time of one batch",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "arrwdb_request_seconds", "Admission to result, per queue kind", ["queue"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.dropped = Counter(
            "arrwdb_requests_dropped", "Requests refused or dropped, by reason", ["reason"], registry=r
        )
        self.device_busy = Gauge("arrwdb_device_busy_fraction", "Share of time the device worker computed", registry=r)
        self.gc_frozen_objects = Gauge(
            "arrwdb_gc_frozen_objects",
            "Start-up objects moved out of the cyclic GC once start-up work settled (0 until then)",
            registry=r,
        )
        # HTTP requests being served, read by the device worker to leave the event loop a core when busy.
        # A plain int: only the event loop writes it.
        self.requests_in_flight = 0
        # time.monotonic() of the last search or embedding batch, or commit: what background builds
        # would take CPU from.  Cheap requests (health, statistics polls) do not count.
        self.last_work_at = float("-inf")
        self.last_search_at = float("-inf")  # the last search or embedding batch only (not commits)
        self.batches_running = 0  # on the device worker (one at a time); read by the index builder
        in_flight = Gauge("arrwdb_http_requests_in_flight", "HTTP requests being served", registry=r)
        in_flight.set_function(lambda: self.requests_in_flight)
        self.commit_size = Histogram(
            "arrwdb_group_commit_requests",
            "Write requests per SQLite transaction",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.embed_cache_hits = Counter("arrwdb_embed_cache_hits", "Embedding cache hits", registry=r)
        self.embed_cache_misses = Counter("arrwdb_embed_cache_misses", "Embedding cache misses", registry=r)
        tokenized = Counter(
            "arrwdb_embed_tokenized_texts",
            "Texts embedded, by who tokenized them: an HTTP worker (ids sent along) or the engine",
            ["by"],
            registry=r,
        )
        self.tokenized_by_worker = tokenized.labels("worker")  # bound once: counted on every embed call
        self.tokenized_by_engine = tokenized.labels("engine")
        self.result_cache_hits = Counter("arrwdb_result_cache_hits", "Search-result cache hits", registry=r)
        self.result_cache_misses = Counter("arrwdb_result_cache_misses", "Search-result cache misses", registry=r)
        self.result_cache_bytes = Gauge(
            "arrwdb_result_cache_bytes", "Estimated bytes held by the search-result cache", registry=r
        )
        self.device_info = Gauge("arrwdb_device_info", "The device the worker runs on", ["device"], registry=r)
        self.gpu_memory = Gauge("arrwdb_gpu_memory_bytes", "GPU memory allocated by torch", registry=r)
        self.model_memory = Gauge(
            "arrwdb_model_memory_bytes", "Bytes of each loaded model's weights on the device", ["model"], registry=r
        )

    def queue(self, kind: str) -> QueueMetrics:
        metrics = self._queues.get(kind)
        if metrics is None:
            metrics = self._queues[kind] = QueueMetrics(
                self.queue_depth.labels(kind),
                self.batch_size.labels(kind),
                self.queue_wait.labels(kind),
                self.compute.labels(kind),
                self.end_to_end.labels(kind),
            )
        return metrics

    def request_started(self) -> None:
        self.requests_in_flight += 1

    def request_ended(self) -> None:
        self.requests_in_flight -= 1

    def work_done(self) -> None:
        """A commit or a search or embedding batch ended: the server is serving."""
        self.last_work_at = time.monotonic()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Around a search or embedding batch: the server is not idle while one runs, however long."""
        self.batches_running += 1
        try:
            yield
        finally:
            self.batches_running -= 1
            self.work_done()
            self.last_search_at = self.last_work_at

    def serving_idle(self, quiet_s: float = 1.0) -> bool:
        """No batch running, and no search, embedding or commit for ``quiet_s``: background work may take
        every core.  (Not "no request in flight": a client polling statistics while it waits for a
        build would then keep the build on one thread.)"""
        return self.batches_running == 0 and time.monotonic() - self.last_work_at >= quiet_s

    def searches_idle(self, quiet_s: float = 1.0) -> bool:
        """No batch running, and no search or embedding batch for ``quiet_s``; commits may go on.  A
        bulk import's commits leave cores idle (the event loop parses, SQLite writes) that a build at a
        lower priority than the loop (``thread_priority``) can take without slowing the inserts."""
        return self.batches_running == 0 and time.monotonic() - self.last_search_at >= quiet_s
