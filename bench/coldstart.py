"""`arrwdb bench coldstart DATA_DIR`: how long a restarted server takes to answer exactly (/ready) and
then from its ANN index (the library's snapshot loaded).  ``--build-rows N`` first makes the data dir
(N seeded random 384-d vectors in one HNSW or ``--index-type brute_force`` library, with the snapshots
a server would have saved) unless it is already there."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from arrwdb.bench.machine import machine_info
from arrwdb.bench.serverproc import ServerProcess

# The store the cold-start target is measured on: 1M x 384 random unit vectors in one HNSW library
# (a lighter graph than the defaults: the target is about loading, not search, and it builds sooner).
COLD_INDEX_PARAMS = {"m": 16, "ef_construction": 40}


def build_cold_store(data_dir: Path, library: str, rows: int, dimension: int = 384, index_type: str = "hnsw") -> None:
    """Make ``data_dir`` hold one library (``hnsw`` or ``brute_force``) of ``rows`` seeded random unit
    vectors with its snapshots saved, as a server would leave it (skipped when already complete)."""
    from arrwdb.bench.datasets import build_vector_store, random_vectors, save_snapshots
    from arrwdb.index import faiss_ops

    marker = data_dir / f".complete-{library}-snapshots"
    if marker.exists():
        return
    params = COLD_INDEX_PARAMS if index_type == "hnsw" else {}
    vectors = random_vectors(rows, dimension)
    build_vector_store(data_dir, library, vectors, index_type=index_type, index_params=params)
    if index_type != "brute_force":  # an exact library's vector snapshot: written by build_vector_store
        row_ids = np.arange(1, rows + 1, dtype=np.int64)  # a new store numbers its rows from 1
        started = time.perf_counter()
        ann = faiss_ops.build(index_type, params, "cosine", row_ids, vectors)
        print(f"built the {index_type} index over {rows} rows in {time.perf_counter() - started:.0f} s", flush=True)
        save_snapshots(data_dir, library, row_ids, vectors, "cosine", index_type, params, ann=ann)
    marker.touch()


def run_coldstart(data_dir: Path, library: str, timeout: float = 600.0) -> dict[str, Any]:
    server = ServerProcess(data_dir, env={"ARRWDB_RESULT_CACHE_BYTES": "0"})
    started = time.perf_counter()
    server.start(timeout=timeout)  # returns when /ready answers 200: exact search serves
    ready_s = time.perf_counter() - started
    try:
        stats = httpx.get(f"{server.url}/v1/libraries/{library}/statistics", timeout=60).json()
        query = np.random.default_rng(0).standard_normal(stats["dimension"]).tolist()
        first = httpx.post(
            f"{server.url}/v1/libraries/{library}/search", json={"embedding": query, "k": 10}, timeout=60
        )
        first_exact_s = time.perf_counter() - started
        first_ann_s, ann_status = None, None  # an exact library has no ANN index to wait for
        if stats["index"]["type"] != "brute_force":
            while time.perf_counter() - started < timeout:
                stats = httpx.get(f"{server.url}/v1/libraries/{library}/statistics", timeout=60).json()
                if stats["index"].get("state") == "ann":
                    break
                time.sleep(0.05)
            ann_status = httpx.post(
                f"{server.url}/v1/libraries/{library}/search", json={"embedding": query, "k": 10}, timeout=60
            ).status_code
            first_ann_s = time.perf_counter() - started
        # A filtered search waits for the documents' metadata, which loads in the background after /ready.
        filtered = httpx.post(
            f"{server.url}/v1/libraries/{library}/search",
            json={"embedding": query, "k": 10, "filter": {"group": {"$gte": 0}}},
            timeout=60,
        )
        first_filtered_s = time.perf_counter() - started
        return {
            "benchmark": "coldstart",
            "machine": machine_info(),
            "vectors": stats["vector_count"],
            "dimension": stats["dimension"],
            "index": stats["index"],
            "ready_s": ready_s,
            "first_exact_query_s": first_exact_s,
            "first_exact_status": first.status_code,
            "first_ann_query_s": first_ann_s,
            "first_ann_status": ann_status,
            "first_filtered_query_s": first_filtered_s,
            "first_filtered_status": filtered.status_code,
            "rss_bytes": server.rss_bytes(),
        }
    finally:
        server.stop()
