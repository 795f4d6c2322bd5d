"""Milvus Lite driver: runs INSIDE the milvus venv (never imports arrwdb), embedded like its users run it.

    python milvus_driver.py SPEC.json

SPEC names the .npy inputs, the output folder and the settings.  Writes ``found.npy`` (the ids of
each query's top-k, for recall computed by arrwdb's bench) and ``timings.json``.  Every load loop is
bounded in time and count.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

COLLECTION = "peers_hnsw"


def qps_point(
    client: MilvusClient, queries: list[list[float]], clients: int, seconds: float, warmup: float, search
) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    def worker(offset: int) -> None:
        i = offset
        local: list[float] = []
        for _ in range(1_000_000):  # bounded in count as well as in time
            sent = time.perf_counter()
            if sent >= stop_at:
                break
            try:
                search([queries[i % len(queries)]])
            except Exception:  # counted, never hidden: the report shows errors
                with lock:
                    errors[0] += 1
            done = time.perf_counter()
            if measure_from <= done <= stop_at:
                local.append((done - sent) * 1000.0)
            i += clients
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.asarray(latencies or [0.0])
    return {
        "clients": clients,
        "requests": len(latencies),
        "ok": len(latencies) - errors[0],
        "errors": errors[0],
        "qps": (len(latencies) - errors[0]) / seconds,
        "mean_ms": float(lat.mean()),
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out_dir"])
    vectors = np.load(spec["vectors"])
    queries = np.load(spec["queries"])
    hnsw, k, batch = spec["hnsw"], spec["k"], spec["batch"]

    client = MilvusClient(str(out / "milvus.db"))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    index_params = client.prepare_index_params()
    index_params.add_index(
        field_name="vector",
        index_type="HNSW",
        metric_type="COSINE",
        params={"M": hnsw["m"], "efConstruction": hnsw["ef_construction"]},
    )
    client.create_collection(COLLECTION, schema=schema, index_params=index_params)

    rows = [{"id": i, "vector": vectors[i].tolist()} for i in range(len(vectors))]
    started = time.perf_counter()
    for s in range(0, len(rows), batch):
        client.insert(COLLECTION, rows[s : s + batch])
    insert_s = time.perf_counter() - started
    search_params = {"metric_type": "COSINE", "params": {"ef": hnsw["ef_search"]}}

    def search(data: list[list[float]]):
        return client.search(COLLECTION, data=data, limit=k, search_params=search_params, output_fields=[])

    query_lists = queries.tolist()
    # flush seals the memtable into segments and builds their HNSW index; the first search is
    # included too, in case any of that work is left to it.
    started = time.perf_counter()
    client.flush(COLLECTION)
    client.load_collection(COLLECTION)
    search(query_lists[:1])
    ready_s = time.perf_counter() - started
    found = np.full((len(queries), k), -1, dtype=np.int64)
    for i, q in enumerate(query_lists):
        hits = search([q])[0]
        ids = [int(hit["id"]) for hit in hits][:k]
        found[i, : len(ids)] = ids
    np.save(out / "found.npy", found)
    points = [qps_point(client, query_lists, n, spec["seconds"], spec["warmup"], search) for n in spec["clients"]]
    timings = {
        "insert": {"docs_per_s": len(vectors) / insert_s, "seconds": insert_s},
        "ready_s": ready_s,
        "qps": points,
        "count": client.query(COLLECTION, filter="", output_fields=["count(*)"])[0]["count(*)"],
    }
    (out / "timings.json").write_text(json.dumps(timings))
    client.close()


if __name__ == "__main__":
    main(sys.argv[1])
