"""`arrwdb bench replicas`: what a second copy of each shard costs writes, on a local Ray cluster.

``arrwdb serve --ray`` over a 2-node cluster on 127.0.0.1 (one engine per node).  Two libraries of one
shard, ``replicas`` 1 and 2 (the replica on the other engine), take the same inserts from ``--clients``
concurrent writers, in rounds that alternate between them so that drift in the machine hits both:
- ``vectors``: batches of ``--batch`` documents with the client's 384-d vectors (no embedding: the
  commit, the index update and, with a replica, shipping and applying the page are all there is);
- ``texts``: batches of short texts the engine embeds (the primary's model does the work; a replica
  applies the vectors it receives and embeds nothing).
A write is acknowledged once every copy has it durable, so each figure is acknowledged documents a
second; one writer's batches sent one after another give the latency a replica adds.  The issue's
target: replicas = 2 at ≥ 60% of replicas = 1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from arrwdb.bench.datasets import random_vectors
from arrwdb.bench.loadgen import float32_base64
from arrwdb.bench.machine import machine_info
from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess

DIMENSION = 384


def _bodies(kind: str, batch: int, count: int, prefix: str) -> list[bytes]:
    """``count`` batch bodies of distinct documents."""
    vectors = random_vectors(batch * count, DIMENSION, seed=11) if kind == "vectors" else None
    bodies = []
    for b in range(count):
        docs = []
        for i in range(batch):
            n = b * batch + i
            if vectors is not None:
                docs.append({"id": f"{prefix}-{n}", "embedding_base64": float32_base64(vectors[n])})
            else:
                docs.append({"id": f"{prefix}-{n}", "text": f"document {n} says something about topic {n % 97}"})
        bodies.append(orjson.dumps({"documents": docs}))
    return bodies


async def _insert(url: str, library: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, Any]:
    """Acknowledged documents a second from ``clients`` writers over ``seconds`` (or until the bodies run out)."""
    queue = list(reversed(bodies))
    done, failed = 0, 0
    stop_at = time.perf_counter() + seconds
    path = f"/v1/libraries/{library}/documents/batch"

    async def writer(client: httpx.AsyncClient) -> None:
        nonlocal done, failed
        while queue and time.perf_counter() < stop_at:
            body = queue.pop()
            answer = await client.post(path, content=body, headers={"content-type": "application/json"})
            if answer.status_code == 201:
                done += len(answer.json()["ids"])
            else:
                failed += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(writer(client) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"documents": done, "failed_requests": failed, "seconds": elapsed, "docs_per_s": done / elapsed}


def _single_writer_ms(url: str, library: str, bodies: list[bytes]) -> float:
    """Median time of one writer's batches sent one after another: the latency a replica adds."""
    timings = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for body in bodies:
            started = time.perf_counter()
            answer = client.post(
                f"/v1/libraries/{library}/documents/batch", content=body, headers={"content-type": "application/json"}
            )
            answer.raise_for_status()
            timings.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(timings)


def _compare(url: str, kind: str, batch: int, clients: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Rounds that alternate between the libraries of 1 and 2 copies; medians of each."""
    per_round = max(1, int(seconds * 400 / batch))  # more bodies than a round can take
    rates: dict[int, list[float]] = {1: [], 2: []}
    for replicas in (1, 2):  # warm-up, not counted (the first embedding batches compile and allocate)
        asyncio.run(_insert(url, f"{kind}-r{replicas}", _bodies(kind, batch, 20, f"warm-{clients}"), clients, 2.0))
    for round_ in range(rounds):
        for replicas in (1, 2) if round_ % 2 == 0 else (2, 1):
            bodies = _bodies(kind, batch, per_round, f"{clients}-{round_}-{replicas}")
            point = asyncio.run(_insert(url, f"{kind}-r{replicas}", bodies, clients, seconds))
            if point["failed_requests"]:
                raise RuntimeError(f"{kind} replicas={replicas}: {point}")
            rates[replicas].append(point["docs_per_s"])
    one, two = (sorted(rates[r])[len(rates[r]) // 2] for r in (1, 2))
    return {
        "kind": kind,
        "batch": batch,
        "clients": clients,
        "docs_per_s": {"replicas_1": one, "replicas_2": two},
        "rounds": {"replicas_1": rates[1], "replicas_2": rates[2]},
        "replicas_2_vs_1": two / one,
    }


def run_replicas(
    output: Path,
    data_dir: Path,
    kinds: tuple[str, ...] = ("vectors", "texts"),
    clients: tuple[int, ...] = (8, 32),
    seconds: float = 8.0,
    rounds: int = 3,
    vector_batch: int = 100,
    text_batch: int = 16,
) -> dict[str, Any]:
    shutil.rmtree(data_dir, ignore_errors=True)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    latency: dict[str, dict[str, float]] = {}
    with LocalRayCluster(nodes=2) as cluster:
        env = {"ARRWDB_RAY_ADDRESS": cluster.address, "ARRWDB_DEVICE": "cpu"}
        with ServerProcess(data_dir, env=env, log_path=output.with_suffix(".server.log")) as server:
            with httpx.Client(base_url=server.url, timeout=120) as client:
                for kind in kinds:
                    batch = vector_batch if kind == "vectors" else text_batch
                    for replicas in (1, 2):
                        body = {"name": f"{kind}-r{replicas}", "replicas": replicas}
                        if kind == "vectors":
                            body["dimension"] = DIMENSION
                        client.post("/v1/libraries", json=body).raise_for_status()
                    latency[kind] = {
                        f"replicas_{r}": _single_writer_ms(
                            server.url, f"{kind}-r{r}", _bodies(kind, batch, 40, f"latency-{r}")
                        )
                        for r in (1, 2, 1, 2)  # the second pass of each is kept: the first warms up
                    }
                    for writers in clients:
                        results[f"{kind}, {writers} clients"] = _compare(
                            server.url, kind, batch, writers, seconds, rounds
                        )
                cluster_view = client.get("/v1/cluster").json()
    report = {
        "benchmark": "replicas",
        "machine": machine_info(),
        "settings": {
            "nodes": 2,
            "engines": 2,
            "dimension": DIMENSION,
            "clients": list(clients),
            "seconds": seconds,
            "rounds": rounds,
        },
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "results": results,
        "single_writer_p50_ms": latency,
        "copies_in_sync_after": all(copy["in_sync"] for engine in cluster_view["engines"] for copy in engine["shards"]),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def format_replicas(report: dict[str, Any]) -> str:
    lines = ["kind     batch  clients  replicas=1 docs/s  replicas=2 docs/s  ratio"]
    for r in report["results"].values():
        rates = r["docs_per_s"]
        lines.append(
            f"{r['kind']:<8} {r['batch']:>5} {r['clients']:>8} {rates['replicas_1']:>18.0f} "
            f"{rates['replicas_2']:>18.0f} {r['replicas_2_vs_1']:>6.2f}"
        )
    for kind, point in report.get("single_writer_p50_ms", {}).items():
        lines.append(
            f"{kind}: one writer's batch p50 {point['replicas_1']:.1f} ms with 1 copy, "
            f"{point['replicas_2']:.1f} ms with 2"
        )
    return "\n".join(lines)
