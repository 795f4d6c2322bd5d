"""`arrwdb bench suite`: search latency and indexing rate for every index type and dimension.

For each dimension (384 / 768 / 1536) and index type (brute_force, ivf, hnsw), through the real
server over HTTP from a single client: insert N seeded random documents with documents/batch (the
indexing rate), wait until an ANN library's index is built (its time), then W warm-up and Q timed
queries (mean, p50, p95, p99) and their recall@10 against exact numpy search.  JSON + PNG.

Request bodies are encoded before the clock starts, so the figures are the server's, not the JSON
encoder's of this client.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from arrwdb.bench.datasets import random_vectors
from arrwdb.bench.loadgen import encode_post, float32_base64
from arrwdb.bench.machine import machine_info
from arrwdb.bench.rawhttp import RawConnection, encode_request
from arrwdb.bench.serverproc import ServerProcess

INDEX_TYPES = ("brute_force", "ivf", "hnsw")


@dataclass(frozen=True)
class SuiteSettings:
    dimensions: tuple[int, ...] = (384, 768, 1536)
    index_types: tuple[str, ...] = INDEX_TYPES
    documents: int = 10_000
    warmup: int = 100
    queries: int = 1000
    batch: int = 1000  # documents per documents/batch request (the API's maximum)
    k: int = 10
    ann_timeout_s: float = 900.0  # longest wait for a background ANN build
    seed: int = 0


# Tiny sizes for tests: still above the 2048 rows at which ANN libraries build their index.
QUICK = SuiteSettings(dimensions=(16, 32), documents=2500, warmup=10, queries=60, batch=500, ann_timeout_s=120.0)


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "mean_ms": float(lat.mean()),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "min_ms": float(lat.min()),
        "max_ms": float(lat.max()),
    }


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ground truth: indices of the k highest cosine similarities (the vectors are unit length)."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[:k]) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(found))


class Library:
    """One benchmark library on a server, driven over a raw keep-alive connection."""

    def __init__(self, conn: RawConnection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.path = f"/v1/libraries/{name}"

    def create(
        self, dimension: int, index_type: str, index_params: dict[str, Any] | None = None, metric: str = "cosine"
    ) -> None:
        body = {"name": self.name, "dimension": dimension, "index_type": index_type, "metric": metric}
        if index_params:
            body["index_params"] = index_params
        self.conn.ok(encode_post(self.conn.host, "/v1/libraries", orjson.dumps(body)))

    def delete(self) -> None:
        self.conn.request(encode_request("DELETE", self.conn.host, self.path))

    def statistics(self) -> dict[str, Any]:
        return orjson.loads(self.conn.ok(encode_request("GET", self.conn.host, f"{self.path}/statistics")))

    def insert_requests(self, vectors: np.ndarray, batch: int, base64_vectors: bool = False) -> list[bytes]:
        """``documents/batch`` requests of ``batch`` vectors each: JSON lists, or with ``base64_vectors``
        the ``embedding_base64`` field (little-endian float32, the binary form peers such as Milvus
        send over gRPC)."""
        path = f"{self.path}/documents/batch"
        requests = []
        for start in range(0, len(vectors), batch):
            stop = min(start + batch, len(vectors))
            documents = [
                {"id": f"d{i}", "embedding_base64": float32_base64(vectors[i])}
                if base64_vectors
                else {"id": f"d{i}", "embedding": vectors[i]}
                for i in range(start, stop)
            ]
            body = orjson.dumps({"documents": documents}, option=orjson.OPT_SERIALIZE_NUMPY)
            requests.append(encode_post(self.conn.host, path, body))
        return requests

    def search_requests(self, queries: np.ndarray, k: int, params: dict[str, int] | None = None) -> list[bytes]:
        path = f"{self.path}/search"
        extra: dict[str, Any] = {"params": params} if params else {}
        option = orjson.OPT_SERIALIZE_NUMPY
        return [
            encode_post(
                self.conn.host,
                path,
                orjson.dumps({"embedding": q, "k": k, "include_text": False, **extra}, option=option),
            )
            for q in queries
        ]

    def wait_ann(
        self, rows: int, timeout_s: float, poll_s: float = 0.05, settle_s: float = 0.3, every_row: bool = False
    ) -> dict[str, Any]:
        """Poll statistics until the ANN index is built and the builder has nothing left to do.

        Done means: state "ann", every row accounted for, and fewer fresh rows than arrwdb folds into
        the graph (it extends the index once 2048 rows, or 5% of it, are fresh; fewer stay in the
        exact fresh segment that is searched beside the graph, by design).  The same figures must
        hold for ``settle_s``, so that a build requested but not yet started is not missed.  The time
        reported is when that state was first seen.  ``every_row``: done only once the graph holds every
        row, calibrated as it is (a server that settles an import folds the last fresh rows in)."""
        started = time.perf_counter()
        index: dict[str, Any] = {}
        seen: tuple[Any, ...] | None = None
        seen_at = 0.0
        while time.perf_counter() - started < timeout_s:
            index = self.statistics()["index"]
            now = time.perf_counter() - started
            fresh, built = index.get("fresh_rows", rows), index.get("ann_rows", 0)
            # A light import graph that is being rebuilt at the library's efConstruction serves meanwhile.
            serving = index.get("state") == "ann" or bool(index.get("upgrading"))
            done = serving and fresh + built == rows and fresh < max(2048, 0.05 * built)
            if every_row:
                done = done and fresh == 0 and index.get("calibrated_rows", built) == built
            state = (index.get("builds"), built, fresh) if done else None
            if state is None or state != seen:
                seen, seen_at = state, now
            elif now - seen_at >= settle_s:
                return {"ready_s": seen_at, "timed_out": False, "fresh_rows": fresh, "index": index}
            time.sleep(poll_s)
        return {"ready_s": None, "timed_out": True, "fresh_rows": index.get("fresh_rows"), "index": index}

    def wait_full_graph(self, timeout_s: float, poll_s: float = 0.05) -> dict[str, Any] | None:
        """Poll statistics until the library's graph is built at its own efConstruction (a light graph
        made during an import is upgraded once the import is quiet); the index statistics then, or None
        if ``timeout_s`` passed first."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            index = self.statistics()["index"]
            if index.get("state") == "ann" and not serves_light_graph(index):
                return index
            time.sleep(poll_s)
        return None


def serves_light_graph(index: dict[str, Any]) -> bool:
    """Whether a library's index statistics show a light import graph not yet upgraded (a server that
    reports no ``graph_ef_construction`` builds none)."""
    built = index.get("graph_ef_construction")
    return built is not None and built != index.get("ef_construction")


def _doc_ids(body: bytes) -> list[int]:
    return [int(hit["document_id"][1:]) for hit in orjson.loads(body)["results"]]


def bench_one(
    conn: RawConnection, dimension: int, index_type: str, settings: SuiteSettings, progress: Any = None
) -> dict[str, Any]:
    vectors = random_vectors(settings.documents, dimension, seed=settings.seed + dimension)
    queries = random_vectors(settings.warmup + settings.queries, dimension, seed=settings.seed + dimension + 1)
    library = Library(conn, f"suite-{index_type}-{dimension}-{uuid.uuid4().hex[:8]}")
    library.create(dimension, index_type)
    try:
        inserts = library.insert_requests(vectors, settings.batch)
        batch_ms: list[float] = []
        started = time.perf_counter()
        for request in inserts:
            ms, status, body = conn.timed(request)
            if status != 201:
                raise RuntimeError(f"documents/batch answered {status}: {body[:200]!r}")
            batch_ms.append(ms)
            if progress is not None:
                progress.update(1)
        insert_s = time.perf_counter() - started
        ann = None
        if index_type != "brute_force":
            ann = library.wait_ann(settings.documents, settings.ann_timeout_s)
            ann["since_first_insert_s"] = None if ann["ready_s"] is None else insert_s + ann["ready_s"]
            # Searches are measured on the library at rest: a light import graph upgraded first.
            full = library.wait_full_graph(settings.ann_timeout_s) if ann["ready_s"] is not None else None
            ann["full_graph_s"] = None if full is None else time.perf_counter() - started
        requests = library.search_requests(queries, settings.k)
        for request in requests[: settings.warmup]:
            conn.ok(request)
        latencies: list[float] = []
        found: list[list[int]] = []
        for request in requests[settings.warmup :]:
            ms, status, body = conn.timed(request)
            if status != 200:
                raise RuntimeError(f"search answered {status}: {body[:200]!r}")
            latencies.append(ms)
            found.append(_doc_ids(body))
            if progress is not None:
                progress.update(1)
        truth = exact_top_k(vectors, queries[settings.warmup :], settings.k)
        search = percentiles(latencies)
        search["qps_single_client"] = 1000.0 / search["mean_ms"]
        search[f"recall_at_{settings.k}"] = recall_at_k(found, truth)
        index = library.statistics()["index"]
    finally:
        library.delete()
    return {
        "dimension": dimension,
        "index_type": index_type,
        "documents": settings.documents,
        "insert": {
            "docs_per_s": settings.documents / insert_s,
            "seconds": insert_s,
            "batch": settings.batch,
            **{f"batch_{k}": v for k, v in percentiles(batch_ms).items() if k in ("p50_ms", "p99_ms")},
        },
        "ann": None if ann is None else {k: v for k, v in ann.items() if k != "index"},
        "search": search,
        "index": index,
        "latencies_ms": [round(x, 4) for x in latencies],
    }


@contextmanager
def _server(url: str | None, work_dir: Path, log_path: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """An existing server (``url``), or a fresh `arrwdb serve` on an empty data dir, stopped after."""
    if url:
        parts = urlsplit(url)
        yield parts.hostname or "127.0.0.1", parts.port or 80, {"url": url, "started_by_bench": False}
        return
    data_dir = Path(tempfile.mkdtemp(prefix="suite-", dir=work_dir))
    try:
        with ServerProcess(data_dir, log_path=log_path) as server:
            info = {"url": server.url, "started_by_bench": True, "env": "defaults (no ARRWDB_* overrides)"}
            try:
                yield "127.0.0.1", server.port, info
            finally:
                info["rss_bytes"] = server.rss_bytes()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run_suite(
    output: Path,
    settings: SuiteSettings = SuiteSettings(),
    url: str | None = None,
    progress: bool = True,
    plot: bool = True,
) -> dict[str, Any]:
    from tqdm import tqdm

    output.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    per_config = -(-settings.documents // settings.batch) + settings.queries
    total = per_config * len(settings.dimensions) * len(settings.index_types)
    bar = tqdm(total=total, desc="suite", unit="req", disable=not progress)
    load_before = os.getloadavg()
    with _server(url, output.parent, output.with_suffix(".server.log")) as (host, port, server_info):
        with RawConnection(host, port) as conn:
            for dimension in settings.dimensions:
                for index_type in settings.index_types:
                    bar.set_postfix_str(f"{index_type} d={dimension}")
                    one = bench_one(conn, dimension, index_type, settings, bar)
                    results.setdefault(str(dimension), {})[index_type] = one
    bar.close()
    report: dict[str, Any] = {
        "benchmark": "suite",
        "machine": machine_info(),
        "settings": {**asdict(settings), "metric": "cosine", "client": "1 keep-alive connection, sequential"},
        "server": server_info,
        # The 1-minute load average before and after: on a shared machine, the context of every figure.
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "results": results,
    }
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if plot:
        from arrwdb.bench.suite_plots import suite_figure

        suite_figure(report, output.with_suffix(".png"))
    return report


def quick_settings(**overrides: Any) -> SuiteSettings:
    return replace(QUICK, **overrides)


def format_table(report: dict[str, Any]) -> str:
    k = report["settings"]["k"]
    lines = [
        f"{'dim':>5} {'index':<12} {'docs/s':>9} {'ann_s':>7} {'mean_ms':>8} {'p50_ms':>8} {'p95_ms':>8} "
        f"{'p99_ms':>8} {'recall@' + str(k):>9}"
    ]
    for dimension, by_type in report["results"].items():
        for index_type, r in by_type.items():
            s = r["search"]
            ann = r["ann"]
            ready = "-" if ann is None else ("timeout" if ann["timed_out"] else f"{ann['ready_s']:.1f}")
            lines.append(
                f"{dimension:>5} {index_type:<12} {r['insert']['docs_per_s']:>9.0f} {ready:>7} {s['mean_ms']:>8.2f} "
                f"{s['p50_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['p99_ms']:>8.2f} {s[f'recall_at_{k}']:>9.3f}"
            )
    return "\n".join(lines)
