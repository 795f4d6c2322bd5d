"""Locust load profile of the profiling guide, against an arrwdb server.

Two users, both waiting 1–3 s between tasks:

- ``ApiUser`` creates a library on start (seeded with a few documents), then searches (weight 10),
  adds documents (5), reads statistics (2) and lists documents (1); it deletes its library on stop.
- ``WorkflowUser`` runs a whole workflow per task: create a library, add 5 documents, search twice,
  delete the library.

The search responses' ``X-Queue-Ms``, ``X-Compute-Ms`` and ``X-Batch-Size`` headers are recorded as
metrics of their own (request type ``header``), so they appear in the stats table, the CSV and the
HTML report next to the HTTP requests.  Locust keeps whole-millisecond buckets below 100, too coarse
for queue times of a fraction of a millisecond, so the two timings are recorded in microseconds
("X-Queue-Ms (us)": 1500 means 1.5 ms); the batch size is a plain count.  A search answered from the
result cache reports batch size 0 and compute 0.

Run it through ``make loadtest`` (which starts a server) or by hand:
``locust -f loadtest/locustfile.py --host http://127.0.0.1:8000``.  Self-contained on purpose: it
needs Locust only, not arrwdb, so it can run from another machine.  ``--summary-json PATH`` writes
the HTTP-only aggregate (p50/p95/p99, error rate) and the header metrics at the end of a run.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.stats import StatsEntry

HEADER_METRICS = (
    # (response header, metric name, scale to the recorded unit)
    ("X-Queue-Ms", "X-Queue-Ms (us)", 1000.0),
    ("X-Compute-Ms", "X-Compute-Ms (us)", 1000.0),
    ("X-Batch-Size", "X-Batch-Size (count)", 1.0),
)
HEADER_TYPE = "header"
API_KEY = os.environ.get("ARRWDB_API_KEY", "")

_WORDS = (
    "river mountain data vector search engine ocean cloud music history science garden market city storm "
    "language memory signal forest planet energy network health travel recipe bridge theory window winter "
    "summer library battery protein galaxy harbor village lecture painting camera circuit desert festival"
).split()
CATEGORIES = ("science", "travel", "music", "health", "finance")
# A small set of recurring queries, as real traffic has: repeats hit the embedding cache, and the
# result cache until the next write to the library.
QUERIES = tuple(f"{a} {b} {c}" for a, b, c in zip(_WORDS[::3], _WORDS[1::3], _WORDS[2::3], strict=True))


def document(rng: random.Random) -> dict[str, Any]:
    return {
        "title": " ".join(rng.choices(_WORDS, k=3)).title(),
        "text": " ".join(rng.choices(_WORDS, k=rng.randint(12, 40))) + ".",
        "metadata": {"category": rng.choice(CATEGORIES), "year": rng.randint(2015, 2025)},
    }


def search_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"query": rng.choice(QUERIES), "k": 10}
    if rng.random() < 0.2:
        body["filter"] = {"category": rng.choice(CATEGORIES)}
    return body


class _ArrwdbUser(FastHttpUser):
    abstract = True
    wait_time = between(1, 3)
    default_headers = {"X-API-Key": API_KEY} if API_KEY else None

    def on_start(self) -> None:
        self.rng = random.Random()

    def create_library(self) -> str | None:
        name = f"lt-{uuid.uuid4().hex[:12]}"
        with self.client.post("/v1/libraries", json={"name": name}, name="/v1/libraries", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"create library: {r.status_code} {r.text[:200]}")
                return None
        return name

    def add_document(self, library: str) -> None:
        self.client.post(
            f"/v1/libraries/{library}/documents", json=document(self.rng), name="/v1/libraries/{id}/documents"
        )

    def search(self, library: str) -> None:
        with self.client.post(
            f"/v1/libraries/{library}/search",
            json=search_body(self.rng),
            name="/v1/libraries/{id}/search",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"search: {response.status_code} {response.text[:200]}")
                return
            record_headers(self.environment, response.headers)

    def delete_library(self, library: str) -> None:
        self.client.delete(f"/v1/libraries/{library}", name="/v1/libraries/{id}")


class ApiUser(_ArrwdbUser):
    """The guide's API user: one library of its own, a mix of reads and writes."""

    def on_start(self) -> None:
        super().on_start()
        self.library = self.create_library()
        if self.library is not None:
            batch = {"documents": [document(self.rng) for _ in range(5)]}
            self.client.post(
                f"/v1/libraries/{self.library}/documents/batch", json=batch, name="/v1/libraries/{id}/documents/batch"
            )

    def on_stop(self) -> None:
        if getattr(self, "library", None) is not None:
            self.delete_library(self.library)

    @task(10)
    def search_documents(self) -> None:
        if self.library is not None:
            self.search(self.library)

    @task(5)
    def add_documents(self) -> None:
        if self.library is not None:
            self.add_document(self.library)

    @task(2)
    def read_statistics(self) -> None:
        if self.library is not None:
            self.client.get(f"/v1/libraries/{self.library}/statistics", name="/v1/libraries/{id}/statistics")

    @task(1)
    def list_documents(self) -> None:
        if self.library is not None:
            self.client.get(f"/v1/libraries/{self.library}/documents?limit=20", name="/v1/libraries/{id}/documents")


class WorkflowUser(_ArrwdbUser):
    """The guide's workflow user: a library's whole life in one task."""

    @task
    def workflow(self) -> None:
        library = self.create_library()
        if library is None:
            return
        for _ in range(5):
            self.add_document(library)
        for _ in range(2):
            self.search(library)
        self.delete_library(library)


def record_headers(environment: Environment, headers: Any) -> None:
    """Fire one ``header`` event per timing header: Locust aggregates them like requests."""
    for header, name, scale in HEADER_METRICS:
        raw = headers.get(header)
        if raw is None:
            continue
        environment.events.request.fire(
            request_type=HEADER_TYPE,
            name=name,
            response_time=float(raw) * scale,
            response_length=0,
            exception=None,
            context={},
        )


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--summary-json", default="", help="Write the run's summary (HTTP-only aggregate) here.")


def summary(environment: Environment) -> dict[str, Any]:
    """The HTTP requests aggregated without the header metrics, and each header metric on its own."""
    http = StatsEntry(environment.stats, "HTTP", "", use_response_times_cache=False)
    metrics: dict[str, dict[str, float]] = {}
    endpoints: dict[str, dict[str, float]] = {}
    for (name, method), entry in environment.stats.entries.items():
        if method == HEADER_TYPE:
            metrics[name] = _figures(entry)
        else:
            http.extend(entry)
            endpoints[f"{method} {name}"] = _figures(entry)
    return {"http": _figures(http), "endpoints": endpoints, "headers": metrics}


def _figures(entry: StatsEntry) -> dict[str, float]:
    requests = entry.num_requests
    return {
        "requests": requests,
        "failures": entry.num_failures,
        "error_rate": entry.num_failures / requests if requests else 0.0,
        "rps": entry.total_rps,
        "mean": entry.avg_response_time,
        "p50": entry.get_response_time_percentile(0.50) if requests else 0.0,
        "p95": entry.get_response_time_percentile(0.95) if requests else 0.0,
        "p99": entry.get_response_time_percentile(0.99) if requests else 0.0,
        "max": entry.max_response_time if requests else 0.0,
    }


@events.quitting.add_listener
def _write_summary(environment: Environment, **_: Any) -> None:
    path = getattr(environment.parsed_options, "summary_json", "") if environment.parsed_options else ""
    if path:
        with open(path, "w") as out:
            json.dump(summary(environment), out, indent=2)
