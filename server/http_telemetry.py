"""The HTTP figures of an HTTP worker process, and ``/metrics`` for the whole server.

Every worker counts its requests in Prometheus's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``,
set for the workers by the parent before they start): each writes its values to files in one folder,
and any worker reads all of them.  A scrape answered by any worker is then the engine's own metrics
(asked over the engine protocol) with the HTTP families of every worker added up, series by series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from arrwdb.runtime.telemetry import LATENCY_BUCKETS, HttpFigures

# Families the workers own: the engine's copies (it serves no HTTP itself) are left out of a scrape.
_WORKER_FAMILIES = ("arrwdb_http_requests", "arrwdb_http_request_seconds", "arrwdb_http_requests_in_flight")


class HttpTelemetry(HttpFigures):
    """What ``HttpMetrics``, the admission door and the disconnect watcher count in a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.http_requests = Counter(
            "arrwdb_http_requests", "HTTP requests by route template and status", ["method", "route", "status"]
        )
        self.http_latency = Histogram(
            "arrwdb_http_request_seconds", "HTTP request latency", ["method", "route"], buckets=LATENCY_BUCKETS
        )
        self.in_flight = Gauge(
            "arrwdb_http_requests_in_flight", "HTTP requests being served", multiprocess_mode="livesum"
        )
        self.dropped = Counter("arrwdb_requests_dropped", "Requests refused or dropped, by reason", ["reason"])
        self.requests_in_flight = 0

    def request_started(self) -> None:
        self.requests_in_flight += 1
        self.in_flight.inc()

    def request_ended(self) -> None:
        self.requests_in_flight -= 1
        self.in_flight.dec()


class _Merged:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def merge_metrics(engine_text: bytes, multiprocess_dir: str) -> bytes:
    """The engine's metrics and every worker's, one family per name, equal series summed."""
    families: dict[str, Metric] = {}
    for family in text_string_to_metric_families(engine_text.decode()):
        if family.name not in _WORKER_FAMILIES:
            families[family.name] = family
    workers = CollectorRegistry()
    MultiProcessCollector(workers, path=multiprocess_dir)
    for family in workers.collect():
        known = families.get(family.name)
        if known is None:
            families[family.name] = family
            continue
        known.samples = _summed([*known.samples, *family.samples])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families.values()))
    return generate_latest(registry)  # type: ignore[no-any-return]


def _summed(samples: list[Sample]) -> list[Sample]:
    """One sample per series: values added up (a ``_created`` time is the earliest, not a sum)."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key in merged and sample.name.endswith("_created"):
            merged[key] = min(merged[key], sample.value)
        else:
            merged[key] = merged.get(key, 0.0) + sample.value
    return [Sample(name, dict(labels), value) for (name, labels), value in merged.items()]
