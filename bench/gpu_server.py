"""The server end to end for `arrwdb bench gpu`: one store of N x D vectors, served by `arrwdb serve`
on the GPU with batching off (max batch 1) and on (256), and on the CPU, each under the same closed
loop of 256 clients; plus /search/batch with 256 queries a request, and the in-process batched rate
on the same data, which is the ceiling HTTP is measured against.

The device's busy fraction (from /metrics) tells where a run is capped: a device busy most of the time
is the limit itself; a device mostly idle while throughput stops growing is the single Python HTTP
process (parsing, JSON, the event loop), which more server processes in front of one device would lift.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pybase64
import torch

from arrwdb.bench.datasets import build_vector_store
from arrwdb.bench.gpu import GpuBenchConfig, random_rows, timed
from arrwdb.bench.loadgen import closed_loop, encode_post
from arrwdb.bench.serverproc import ServerProcess

LIBRARY = "vectors"
BATCH_QUERIES = 256
BATCH_CLIENTS = 4  # requests of 256 queries in flight: one parsing while another searches


def _vectors(config: GpuBenchConfig) -> np.ndarray:
    out = np.empty((config.server_rows, config.server_dimension), dtype=np.float32)
    for start, block in random_rows(config.server_rows, config.server_dimension, config.device, seed=5):
        out[start : start + len(block)] = block
    return out


def _search_requests(count: int, dimension: int, per_request: int = 1, base64: bool = False) -> list[bytes]:
    """``count`` request bodies of ``per_request`` queries each (JSON floats, or base64 float32)."""
    queries = np.random.default_rng(6).standard_normal((count * per_request, dimension), dtype=np.float32)

    def query(vector: np.ndarray) -> dict[str, Any]:
        if base64:
            return {
                "embedding_base64": pybase64.b64encode(vector.astype("<f4").tobytes()).decode(),
                "k": 10,
                "include_text": False,
            }
        return {"embedding": vector, "k": 10, "include_text": False}

    if per_request == 1:
        path = f"/v1/libraries/{LIBRARY}/search"
        bodies = [query(q) for q in queries]
    else:
        path = f"/v1/libraries/{LIBRARY}/search/batch"
        bodies = [
            {"queries": [query(q) for q in queries[i : i + per_request]]} for i in range(0, len(queries), per_request)
        ]
    return [encode_post("127.0.0.1", path, orjson.dumps(b, option=orjson.OPT_SERIALIZE_NUMPY)) for b in bodies]


def _in_process(vectors: np.ndarray, config: GpuBenchConfig) -> dict[str, Any]:
    from arrwdb.index.flat import FlatIndex

    device = torch.device(config.device)
    index = FlatIndex(vectors.shape[1], "cosine", device, torch.float16 if config.simulate_half else None)
    for start in range(0, len(vectors), 100_000):
        stop = min(start + 100_000, len(vectors))
        index.add(np.arange(start, stop, dtype=np.int64), vectors[start:stop])
    queries = np.random.default_rng(7).standard_normal((BATCH_QUERIES, vectors.shape[1]), dtype=np.float32)
    seconds = timed(lambda: index.search(queries, 10), config.device)
    return {"batch": BATCH_QUERIES, "qps": BATCH_QUERIES / seconds, "ms": seconds * 1000}


def _load(server: ServerProcess, requests: list[bytes], clients: int, config: GpuBenchConfig) -> dict[str, Any]:
    result = asyncio.run(closed_loop("127.0.0.1", server.port, requests, clients, config.seconds, config.warmup))
    summary = result.summary()
    if result.batch_sizes:
        # Device seconds per second: each request carries its batch's compute time (X-Compute-Ms) and
        # size (X-Batch-Size), so compute / size summed over requests is the device time spent.
        per_request = np.asarray(result.compute_ms) / np.maximum(np.asarray(result.batch_sizes), 1)
        summary["device_busy"] = float(per_request.sum() / 1000.0 / result.seconds)
    return summary


def _data_dir(config: GpuBenchConfig) -> Path:
    return config.cache_dir / f"gpu-{config.server_rows}x{config.server_dimension}"


def build_server_store(config: GpuBenchConfig) -> dict[str, Any]:
    """The servers' store, built ahead (gpu_check.sh builds it while the tests run); kept once complete."""
    t0 = time.perf_counter()
    build_vector_store(_data_dir(config), LIBRARY, _vectors(config))
    return {"rows": config.server_rows, "dimension": config.server_dimension, "build_s": time.perf_counter() - t0}


def server_end_to_end(config: GpuBenchConfig, log_path: Path, deadline: float = float("inf")) -> dict[str, Any]:
    """Runs that would start after ``deadline`` (time.monotonic) are skipped and listed as such."""
    vectors = _vectors(config)
    data_dir = _data_dir(config)
    t0 = time.perf_counter()
    build_vector_store(data_dir, LIBRARY, vectors)  # at once when built ahead
    out: dict[str, Any] = {
        "rows": config.server_rows,
        "dimension": config.server_dimension,
        "store_build_s": time.perf_counter() - t0,
        "in_process": _in_process(vectors, config),
    }
    del vectors
    if config.device == "cuda":
        torch.cuda.empty_cache()  # the in-process index is gone: the servers started next need the memory
    singles = _search_requests(2000, config.server_dimension)
    batches = {
        # JSON floats cost the event loop a Python float per value (~10 ms a 256 x 768 body); base64
        # float32 is what a client after throughput sends.
        "search_batch": _search_requests(8, config.server_dimension, per_request=BATCH_QUERIES, base64=True),
        "search_batch_json": _search_requests(8, config.server_dimension, per_request=BATCH_QUERIES),
    }
    most = max(config.server_workers)
    runs = [(config.device, "off", 1, most)] + [(config.device, "on", 256, w) for w in config.server_workers]
    if config.device == "cuda":
        runs.append(("cpu", "on", 256, most))  # the same data on the CPU: what the GPU buys
    out["runs"], out["skipped_runs"] = [], []
    for device, setting, max_batch, workers in runs:
        if time.monotonic() > deadline:
            out["skipped_runs"].append(f"{device}, batching {setting}, {workers} workers: past the time budget")
            continue
        env = {
            "ARRWDB_WORKERS": str(workers),
            "ARRWDB_DEVICE": device,
            "ARRWDB_MAX_BATCH_SIZE": str(max_batch),
            "ARRWDB_EMBED_CACHE_BYTES": "0",
            "ARRWDB_RESULT_CACHE_BYTES": "0",  # repeated queries must reach the device
            "ARRWDB_API_KEYS": "",
        }
        started = time.perf_counter()
        server = ServerProcess(data_dir, env=env, log_path=log_path)
        server.start(timeout=300)  # loads the library into memory (and onto the GPU) and warms up
        try:
            entry: dict[str, Any] = {
                "device": device,
                "batching": setting,
                "workers": workers,
                "start_s": time.perf_counter() - started,
            }
            # /ready comes before the documents' metadata: 2M documents take seconds to read on a thread
            # that holds the GIL, then a GC pause: a measurement inside that window times those pauses
            # (on a GPU host, batches hundreds of times slower than once settled).
            server.wait_settled(timeout=300)
            entry["settled_s"] = time.perf_counter() - started
            stats = httpx.get(f"{server.url}/v1/libraries/{LIBRARY}/statistics", timeout=30).json()
            entry.update(library_device=stats.get("device"), gpu_memory_bytes=stats.get("gpu_memory_bytes"))
            entry["search"] = _load(server, singles, config.clients, config)
            if setting == "on":
                for name, requests in batches.items():
                    batch = _load(server, requests, BATCH_CLIENTS, config)
                    batch["qps"] = batch["qps"] * BATCH_QUERIES  # queries, not requests
                    entry[name] = batch
            out["runs"].append(entry)
        finally:
            server.stop()
    out["ratios"] = ratios(out)
    return out


def _run(out: dict[str, Any], device: str, setting: str) -> dict[str, Any] | None:
    """The run of this device and setting; of several (worker counts), the one answering the most."""
    runs = [r for r in out.get("runs", []) if r["device"] == device and r["batching"] == setting]
    return max(runs, key=lambda r: r["search"]["qps"], default=None)


def ratios(out: dict[str, Any]) -> dict[str, float]:
    device = out["runs"][0]["device"] if out.get("runs") else "cpu"
    on, off, cpu = _run(out, device, "on"), _run(out, device, "off"), _run(out, "cpu", "on")
    ratios: dict[str, float] = {}
    if on and off and off["search"]["qps"]:
        ratios["batched_over_unbatched"] = on["search"]["qps"] / off["search"]["qps"]
    for run in out.get("runs", []):
        if run["device"] == device and run["batching"] == "on":
            ratios[f"search_over_in_process@{run['workers']}_workers"] = run["search"]["qps"] / out["in_process"]["qps"]
    for key in ("search_batch", "search_batch_json"):
        if on and key in on:
            ratios[f"{key}_over_in_process"] = on[key]["qps"] / out["in_process"]["qps"]
    if on and cpu and device == "cuda" and cpu["search"]["qps"]:
        ratios["gpu_over_cpu_server"] = on["search"]["qps"] / cpu["search"]["qps"]
    return ratios
