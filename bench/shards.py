"""`arrwdb bench shards`: what fanning a search out over shards costs, on a local Ray cluster.

The same rows (random 384-d vectors, exact index) in a library of 1, 2 and 4 shards, served by
``arrwdb serve --ray`` over a 2-node cluster on 127.0.0.1 (one engine per node).  Per library:
- one client, one request at a time: the latency of a single query (batch 1) and of a 64-query
  ``/search/batch`` request (batch 64), medians over ``--requests`` requests: the fan-out's fixed cost
  (one Ray call per shard, the merge) against the search itself;
- ``--clients`` closed-loop clients of single queries: throughput, with the frontend's micro-batches
  (one call per shard per batch) doing what batching does on one engine.
The issue's target: a 2-shard search at batch 64 within 1.5x of the 1-shard time.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from arrwdb.bench.datasets import random_vectors
from arrwdb.bench.loadgen import closed_loop, encode_post, float32_base64
from arrwdb.bench.machine import machine_info
from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess

DIMENSION = 384
INSERT_BATCH = 1000


def _load(client: httpx.Client, name: str, shards: int, vectors: Any) -> None:
    created = client.post("/v1/libraries", json={"name": name, "dimension": DIMENSION, "shards": shards})
    created.raise_for_status()
    for start in range(0, len(vectors), INSERT_BATCH):
        docs = [
            {"id": f"row-{start + i}", "embedding_base64": float32_base64(v)}
            for i, v in enumerate(vectors[start : start + INSERT_BATCH])
        ]
        client.post(f"/v1/libraries/{name}/documents/batch", json={"documents": docs}, timeout=300).raise_for_status()


def _latency(client: httpx.Client, path: str, bodies: list[bytes], requests: int) -> dict[str, float]:
    """Medians of the request's time at the client, and of the engines' queue and compute time (the
    slowest shard's, from X-Queue-Ms / X-Compute-Ms): the rest is HTTP, the fan-out and the merge."""
    timings, engine = [], []
    for i in range(requests + 5):
        started = time.perf_counter()
        answer = client.post(path, content=bodies[i % len(bodies)], headers={"content-type": "application/json"})
        answer.raise_for_status()
        if i >= 5:  # the first few warm the path
            timings.append((time.perf_counter() - started) * 1000.0)
            engine.append(float(answer.headers["x-queue-ms"]) + float(answer.headers["x-compute-ms"]))
    timings.sort()
    p50, engine_p50 = statistics.median(timings), statistics.median(engine)
    return {
        "p50_ms": p50,
        "p90_ms": timings[int(0.9 * (len(timings) - 1))],
        "engine_p50_ms": engine_p50,
        "outside_engine_p50_ms": p50 - engine_p50,
    }


def run_shards(
    output: Path,
    data_dir: Path,
    rows: int = 50_000,
    shard_counts: tuple[int, ...] = (1, 2, 4),
    requests: int = 60,
    clients: int = 64,
    seconds: float = 5.0,
) -> dict[str, Any]:
    shutil.rmtree(data_dir, ignore_errors=True)
    vectors = random_vectors(rows, DIMENSION, seed=5)
    queries = random_vectors(512, DIMENSION, seed=6)
    single = [orjson.dumps({"embedding_base64": float32_base64(q), "k": 10}) for q in queries]
    batches = [
        orjson.dumps({"queries": [{"embedding_base64": float32_base64(q), "k": 10} for q in queries[s : s + 64]]})
        for s in range(0, 512, 64)
    ]
    points = []
    with LocalRayCluster(nodes=2) as cluster:
        env = {"ARRWDB_RAY_ADDRESS": cluster.address, "ARRWDB_DEVICE": "cpu", "ARRWDB_RESULT_CACHE_BYTES": "0"}
        with ServerProcess(data_dir, env=env, log_path=output.with_suffix(".server.log")) as server:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for shards in shard_counts:
                    _load(client, f"s{shards}", shards, vectors)
                for shards in shard_counts:
                    path = f"/v1/libraries/s{shards}/search"
                    one = _latency(client, path, single, requests)
                    many = _latency(client, f"{path}/batch", batches, max(10, requests // 4))
                    load_requests = [encode_post("127.0.0.1", path, body) for body in single]
                    load = asyncio.run(closed_loop("127.0.0.1", server.port, load_requests, clients, seconds, 1.0))
                    summary = load.summary()
                    points.append(
                        {
                            "shards": shards,
                            "batch1": one,
                            "batch64": many,
                            "clients": {k: summary[k] for k in ("clients", "qps", "p50_ms", "p99_ms", "statuses")},
                        }
                    )
    base = points[0]
    for point in points:
        point["batch1"]["vs_1_shard"] = point["batch1"]["p50_ms"] / base["batch1"]["p50_ms"]
        point["batch64"]["vs_1_shard"] = point["batch64"]["p50_ms"] / base["batch64"]["p50_ms"]
    report = {
        "benchmark": "shards",
        "machine": machine_info(),
        "settings": {
            "rows": rows,
            "dimension": DIMENSION,
            "index_type": "brute_force",
            "k": 10,
            "nodes": 2,
            "engines": 2,
            "requests": requests,
            "clients": clients,
            "seconds": seconds,
        },
        "results": points,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def format_shards(report: dict[str, Any]) -> str:
    lines = [
        "shards  batch1_p50_ms  (x 1 shard)  outside_engine  batch64_p50_ms  (x 1 shard)  outside_engine"
        "  clients_qps  clients_p99_ms"
    ]
    for p in report["results"]:
        one, many = p["batch1"], p["batch64"]
        lines.append(
            f"{p['shards']:>6} {one['p50_ms']:>14.2f} {one['vs_1_shard']:>11.2f}x "
            f"{one['outside_engine_p50_ms']:>15.2f} "
            f"{many['p50_ms']:>15.2f} {many['vs_1_shard']:>11.2f}x {many['outside_engine_p50_ms']:>15.2f} "
            f"{p['clients']['qps']:>12.1f} {p['clients']['p99_ms']:>15.1f}"
        )
    return "\n".join(lines)
