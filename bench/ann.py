"""`arrwdb bench ann`: recall@10 against throughput for the ANN index types, sweeping ef_search (HNSW)
and nprobe (IVF), three ways on the same built index:

- raw FAISS in process (the ceiling: the bare index object, no id map, no selector, no Python around it);
- arrwdb's index in process (AnnIndex: what the device worker calls);
- through the server with N concurrent closed-loop clients (HTTP, batching, JSON bodies with the
  vectors in base64), loading the same index from a snapshot so that every curve
  measures one and the same graph or list structure: once with one query per POST /search request
  ("server"), once with ``request_batch`` queries per POST /search/batch request ("server_batch"; its
  ``qps`` is queries/s = requests/s x request_batch).

Every leg searches the same ``recall_queries`` held-out queries, cycled: a smaller set stays warmer in
the CPU caches (on GloVe HNSW, 1,000 queries ran raw FAISS 1.7x faster than 10,000), so legs measured
on different sets are not comparable.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from arrwdb.bench.ann_data import AnnDataset, bible, glove, ground_truth, normalised, synthetic
from arrwdb.bench.ann_report import plot, server_targets, summary_table
from arrwdb.bench.datasets import DEFAULT_TENANT
from arrwdb.bench.loadgen import closed_loop, encode_post, float32_base64
from arrwdb.bench.machine import machine_info
from arrwdb.bench.serverproc import ServerProcess

SWEEPS: dict[str, tuple[str, list[int]]] = {
    "hnsw": ("ef_search", [16, 32, 64, 128, 256, 512]),
    "ivf": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128]),
}
LIBRARY = "ann"


@dataclass(frozen=True)
class LoadSettings:
    clients: int
    seconds: float
    request_batch: int


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _timed_batches(search: Any, queries: np.ndarray, batch: int, min_seconds: float) -> tuple[np.ndarray, float]:
    """Search all queries in batches (repeating until ``min_seconds``): (ids of the first pass, QPS)."""
    found = []
    started = time.perf_counter()
    done = 0
    passes = 0
    while True:
        for start in range(0, len(queries), batch):
            ids = search(queries[start : start + batch])
            if passes == 0:
                found.append(ids)
            done += len(ids)
        passes += 1
        if time.perf_counter() - started >= min_seconds:
            break
    return np.concatenate(found), done / (time.perf_counter() - started)


def _build(data: AnnDataset, index_type: str) -> tuple[Any, np.ndarray]:
    from arrwdb.index import faiss_ops

    rows = np.arange(1, len(data.base) + 1, dtype=np.int64)
    base = normalised(data).base
    started = time.perf_counter()
    ann = faiss_ops.build(index_type, {}, data.metric, rows, base)
    print(f"  built {index_type} over {len(rows)} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return ann, rows


def _raw_search(ann: Any, index_type: str, param: str, value: int) -> Any:
    import faiss

    inner = faiss.downcast_index(ann.index) if index_type == "hnsw" else ann
    if index_type == "hnsw":
        inner.hnsw.efSearch = value
    else:
        inner.nprobe = value

    def search(queries: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(1 if len(queries) == 1 else 2)
        _, ids = inner.search(queries, 10)
        return ids + (1 if index_type == "hnsw" else 0)  # the bare graph numbers rows from 0

    return search


def _arrwdb_index(data: AnnDataset, index_type: str, ann: Any, rows: np.ndarray) -> Any:
    import torch

    from arrwdb.index.ann import AnnIndex
    from arrwdb.records import LibraryRecord

    record = LibraryRecord("bench", DEFAULT_TENANT, LIBRARY, data.base.shape[1], index_type, data.metric, {}, "now")
    index = AnnIndex(record, torch.device("cpu"))
    index.add(rows, data.base)
    index.install(ann, rows, len(rows))
    return index


def _ours(index: Any, params: dict[str, int]) -> Any:
    return lambda queries: index.search(queries, 10, None, params)[1]


def _prepare_server_dir(data: AnnDataset, index_type: str, ann: Any, rows: np.ndarray, data_dir: Path) -> None:
    from arrwdb.bench.datasets import build_vector_store, save_snapshots

    build_vector_store(data_dir, LIBRARY, data.base, metric=data.metric, index_type=index_type)
    save_snapshots(data_dir, LIBRARY, rows, data.base, data.metric, index_type, ann=ann)


def _wait_ann(url: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/v1/libraries/{LIBRARY}/statistics", timeout=30).json()
        if stats["index"].get("state") == "ann" and stats["index"].get("fresh_rows", 0) == 0:
            return stats
        time.sleep(0.5)
    raise RuntimeError("the server never loaded its ANN index")


def _server_recall(
    url: str, queries: np.ndarray, truth: np.ndarray, params: dict[str, int], per_request: int = 100
) -> float:
    """Recall@10 of the server's answers, fetched through /search/batch ``per_request`` queries at a time."""
    found = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(queries), per_request):
            response = client.post(
                f"/v1/libraries/{LIBRARY}/search/batch",
                content=_batch_body(queries[start : start + per_request], params),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
            for hits in response.json()["results"]:
                ids = [int(h["document_id"][1:]) + 1 for h in hits]
                found.append(ids + [-1] * (10 - len(ids)))
    return _recall(np.asarray(found), truth)


def _query(q: np.ndarray, params: dict[str, int]) -> dict[str, Any]:
    """A query as a throughput-minded client sends it: the vector as ``embedding_base64`` (a batch of
    64 x 50 JSON floats costs the server's event loop more than the base64 of the same floats)."""
    return {"embedding_base64": float32_base64(q), "k": 10, "include_text": False, "params": params}


def _batch_body(queries: np.ndarray, params: dict[str, int]) -> bytes:
    return orjson.dumps({"queries": [_query(q, params) for q in queries]}, option=orjson.OPT_SERIALIZE_NUMPY)


def _single_bodies(queries: np.ndarray, params: dict[str, int]) -> list[bytes]:
    """One query per POST /search request."""
    path = f"/v1/libraries/{LIBRARY}/search"
    return [
        encode_post("127.0.0.1", path, orjson.dumps(_query(q, params), option=orjson.OPT_SERIALIZE_NUMPY))
        for q in queries
    ]


def _batch_bodies(queries: np.ndarray, params: dict[str, int], request_batch: int) -> list[bytes]:
    """POST /search/batch requests of exactly ``request_batch`` queries each, cycling through the pool
    (the last one wraps around to its start) so that every request carries the same load."""
    path = f"/v1/libraries/{LIBRARY}/search/batch"
    count = -(-len(queries) // request_batch)
    return [
        encode_post(
            "127.0.0.1",
            path,
            _batch_body(queries[np.arange(i * request_batch, (i + 1) * request_batch) % len(queries)], params),
        )
        for i in range(count)
    ]


def _server_legs(
    url: str, port: int, param: str, value: int, queries: np.ndarray, truth: np.ndarray, load: LoadSettings
) -> dict[str, dict[str, Any]]:
    """One sweep point through the server: ``load.clients`` closed-loop clients sending one query per
    /search request ("server"), then ``load.request_batch`` queries per /search/batch request
    ("server_batch"; skipped when 0).  ``qps`` is queries per second in both (requests/s x batch)."""
    params = {param: value}
    legs: dict[str, dict[str, Any]] = {}
    runs = [("server", 1, _single_bodies(queries, params))]
    if load.request_batch:
        runs.append(("server_batch", load.request_batch, _batch_bodies(queries, params, load.request_batch)))
    for leg, per_request, bodies in runs:
        recall = _server_recall(url, queries, truth, params, per_request=per_request if per_request > 1 else 100)
        result = asyncio.run(
            closed_loop(
                "127.0.0.1", port, bodies, load.clients, load.seconds, warmup=1.0, items=[per_request] * len(bodies)
            )
        )
        summary = result.summary()
        point = {param: value, "clients": load.clients, "qps": summary["items_per_s"], "recall": recall,
                 "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
                 "mean_batch_size": summary["mean_batch_size"], "statuses": summary["statuses"]}  # fmt: skip
        if leg == "server_batch":
            point.update({"request_batch": per_request, "requests_per_s": summary["qps"]})
        legs[leg] = point
    return legs


def run_dataset(
    data: AnnDataset,
    index_types: tuple[str, ...],
    cache_dir: Path,
    clients: int,
    seconds: float,
    recall_queries: int,
    batch: int,
    request_batch: int = 64,
) -> dict[str, Any]:
    print(f"{data.name}: base {data.base.shape}, {len(data.queries)} queries", flush=True)
    truth = ground_truth(data, 10) + 1  # row ids start at 1
    queries = normalised(data).queries[:recall_queries]
    truth = truth[:recall_queries]
    load = LoadSettings(clients, seconds, request_batch)
    out: dict[str, Any] = {"base": list(data.base.shape), "queries": len(data.queries), "curves": {}}
    if data.answers is not None:
        top1 = truth[: len(data.answers), 0] - 1
        out["exact_top1_is_the_answer"] = float(np.mean(top1 == data.answers[: len(top1)]))
    for index_type in index_types:
        param, values = SWEEPS[index_type]
        ann, rows = _build(data, index_type)
        index = _arrwdb_index(data, index_type, ann, rows)
        curves: dict[str, list[dict[str, Any]]] = {"faiss": [], "faiss_b1": [], "arrwdb": [], "server": []}
        if request_batch:
            curves["server_batch"] = []
        for value in values:
            raw = _raw_search(ann, index_type, param, value)
            found, qps = _timed_batches(raw, queries, batch, 1.0)
            curves["faiss"].append({param: value, "batch": batch, "qps": qps, "recall": _recall(found, truth)})
            found, qps = _timed_batches(raw, queries, 1, 0.5)
            curves["faiss_b1"].append({param: value, "batch": 1, "qps": qps, "recall": _recall(found, truth)})
            found, qps = _timed_batches(_ours(index, {param: value}), queries, batch, 1.0)
            curves["arrwdb"].append({param: value, "batch": batch, "qps": qps, "recall": _recall(found, truth)})
        data_dir = cache_dir / f"ann-{data.name}-{index_type}"
        _prepare_server_dir(data, index_type, ann, rows, data_dir)
        with ServerProcess(data_dir, env={"ARRWDB_EMBED_CACHE_BYTES": "0", "ARRWDB_RESULT_CACHE_BYTES": "0"}) as server:
            _wait_ann(server.url)
            server.wait_settled()
            for value in values:
                legs = _server_legs(server.url, server.port, param, value, queries, truth, load)
                for leg, point in legs.items():
                    curves[leg].append(point)
                line = " ".join(f"{leg} {p['qps']:.0f} qps recall {p['recall']:.3f}" for leg, p in legs.items())
                print(f"  {index_type} {param}={value}: {line}", flush=True)
        out["curves"][index_type] = curves
    return out


def run_ann(
    output: Path,
    cache_dir: Path,
    datasets: tuple[str, ...] = ("glove", "bible"),
    index_types: tuple[str, ...] = ("hnsw", "ivf"),
    clients: int = 64,
    seconds: float = 4.0,
    recall_queries: int = 2000,
    batch: int = 64,
    request_batch: int = 64,
) -> dict[str, Any]:
    if not 0 <= request_batch <= 1000:
        raise ValueError("request_batch is 0 (no batch-request leg) or 1 to 1000 queries per request")
    output.parent.mkdir(parents=True, exist_ok=True)
    loaders = {"glove": glove, "bible": lambda: bible(cache_dir), "synthetic": synthetic}
    report: dict[str, Any] = {
        "benchmark": "ann",
        "machine": machine_info(),
        "settings": {"clients": clients, "seconds": seconds, "recall_queries": recall_queries, "batch": batch, "k": 10,
                     "request_batch": request_batch, "sweeps": SWEEPS},
        "datasets": {},
    }  # fmt: skip
    for name in datasets:
        data = loaders[name]()
        report["datasets"][data.name] = run_dataset(
            data, index_types, cache_dir, clients, seconds, recall_queries, batch, request_batch
        )
    report["table"] = summary_table(report)
    report["targets"] = server_targets(report)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    plot(report, output.with_suffix(".png"))
    return report
