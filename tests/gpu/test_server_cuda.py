"""The server end to end on ``arrwdb serve --device cuda``: a real process on a loopback port, every
index type and metric, checked against a float64 reference of the same vectors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from arrwdb.bench.serverproc import free_port
from arrwdb.client.client import Client

DIM = 64
ROWS = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    port = free_port()
    data_dir: Path = tmp_path_factory.mktemp("cuda-server")
    log = open(data_dir / "server.log", "wb")
    env = {**os.environ, "ARRWDB_API_KEYS": "", "ARRWDB_LOG_LEVEL": "info"}
    command = [sys.executable, "-m", "arrwdb.cli", "serve", "--device", "cuda", "--port", str(port)]
    process = subprocess.Popen([*command, "--data-dir", str(data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = Client(url, timeout=120.0)
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {(data_dir / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.3)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=60)
        log.close()


def _reference(data: np.ndarray, queries: np.ndarray, metric: str, k: int) -> np.ndarray:
    x, q = data.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x, q = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = q @ x.T
    if metric == "l2":
        scores = -((q**2).sum(1)[:, None] - 2 * scores + (x**2).sum(1)[None, :])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("index_type", ["brute_force", "ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_search_on_cuda_matches_the_reference(server: Client, index_type: str, metric: str) -> None:
    name = f"{index_type}-{metric}"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    data = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    server.create_library(name, dimension=DIM, index_type=index_type, metric=metric)
    for start in range(0, ROWS, 1000):
        docs = [{"id": f"d{i}", "embedding": data[i].tolist()} for i in range(start, start + 1000)]
        server.add_documents(name, docs)
    queries = rng.standard_normal((20, DIM), dtype=np.float32)
    truth = _reference(data, queries, metric, 10)
    # The widest ANN search: IVF over every list is exact, HNSW nearly so (the index may still be building).
    params = {"nprobe": 65536} if index_type == "ivf" else {"ef_search": 1024} if index_type == "hnsw" else None
    found = []
    for query in queries:
        hits = server.search(name, embedding=query.tolist(), k=10, include_text=False, params=params)
        found.append([int(h["document_id"][1:]) for h in hits])
    found_ids = np.array(found)
    overlap = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found_ids, truth, strict=True)])
    assert overlap >= (0.99 if index_type == "brute_force" else 0.97)
    body = [{"embedding": q.tolist(), "k": 10, "include_text": False, "params": params or {}} for q in queries]
    batch = server.search_batch(name, body)
    batch_ids = np.array([[int(h["document_id"][1:]) for h in hits] for hits in batch])
    np.testing.assert_array_equal(batch_ids, found_ids)  # batch invariance over HTTP
    stats = server.statistics(name)
    assert stats["device"] == "cuda" and stats["gpu_memory_bytes"] > 0 and stats["vector_count"] == ROWS
    assert stats["index"]["backend"]
    if index_type == "brute_force":
        assert stats["index"]["dtype"] == "float16"


def test_text_search_embeds_on_cuda(server: Client) -> None:
    server.create_library("texts")
    texts = ["The cat sleeps on the warm windowsill.", "Stock markets fell sharply.", "Rain is expected tomorrow."]
    server.add_documents("texts", [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    for i, text in enumerate(texts):
        hits = server.search("texts", query=text, k=1)
        assert hits[0]["document_id"] == f"t{i}" and hits[0]["score"] > 0.99
    embedded = server.embed(texts)
    assert embedded["dimension"] == len(embedded["embeddings"][0])


def test_metrics_report_gpu_memory(server: Client) -> None:
    metrics = server.metrics()
    line = next(line for line in metrics.splitlines() if line.startswith("arrwdb_gpu_memory_bytes"))
    assert float(line.split()[-1]) > 0
    assert 'arrwdb_device_info{device="cuda"} 1.0' in metrics
