"""`arrwdb bench workers`: how the HTTP side scales with HTTP worker processes.

A 1,000-row exact library and k = 1, so the device's share of each request is small and the HTTP
work (parse, validate, protocol, render) is what bounds the server: 64 closed-loop clients of single
vector queries against ``arrwdb serve --workers N`` for each N (0 = HTTP inside the engine's process).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from arrwdb.bench.datasets import build_vector_store, random_vectors
from arrwdb.bench.loadgen import closed_loop, encode_post
from arrwdb.bench.machine import machine_info
from arrwdb.bench.serverproc import ServerProcess

LIBRARY = "small"
ROWS, DIMENSION = 1000, 384


def run_workers(
    output: Path,
    cache_dir: Path,
    workers: tuple[int, ...] = (0, 1, 2),
    clients: int = 64,
    seconds: float = 6.0,
    warmup: float = 1.5,
) -> dict[str, Any]:
    data_dir = cache_dir / f"small-{ROWS}x{DIMENSION}"
    build_vector_store(data_dir, LIBRARY, random_vectors(ROWS, DIMENSION, seed=3))
    path = f"/v1/libraries/{LIBRARY}/search"
    requests = [
        encode_post("127.0.0.1", path, orjson.dumps({"embedding": q, "k": 1}, option=orjson.OPT_SERIALIZE_NUMPY))
        for q in random_vectors(2000, DIMENSION, seed=4)
    ]
    points = []
    for count in workers:
        env = {"ARRWDB_WORKERS": str(count), "ARRWDB_RESULT_CACHE_BYTES": "0"}
        with ServerProcess(data_dir, env=env, log_path=output.with_suffix(".server.log")) as server:
            server.wait_settled()
            load = asyncio.run(closed_loop("127.0.0.1", server.port, requests, clients, seconds, warmup))
            points.append({"workers": count, **load.summary()})
    report = {
        "benchmark": "workers",
        "machine": machine_info(),
        "settings": {"rows": ROWS, "dimension": DIMENSION, "k": 1, "clients": clients, "seconds": seconds},
        "results": points,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def format_workers(report: dict[str, Any]) -> str:
    lines = ["workers      qps    p50_ms    p99_ms  batch  statuses"]
    base = next((p["qps"] for p in report["results"] if p["workers"] == 1), None)
    for p in report["results"]:
        scale = f"  {p['qps'] / base:.2f}x of 1 worker" if base else ""
        lines.append(
            f"{p['workers']:>7} {p['qps']:>8.1f} {p['p50_ms']:>9.2f} {p['p99_ms']:>9.2f} "
            f"{p['mean_batch_size']:>6.1f}  {p['statuses']}{scale}"
        )
    return "\n".join(lines)
