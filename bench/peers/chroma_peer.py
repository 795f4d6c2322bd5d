"""Chroma in the peers run: `chroma run` on loopback from its own venv, loaded over HTTP from here.

Requests follow what chromadb's own HttpClient sends: inserts carry base64 float32 embeddings (the
client does this whenever the server's pre-flight check allows it), queries carry JSON floats and
ask only for ids and distances.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.bench.loadgen import encode_post, float32_base64
from arrwdb.bench.peers.common import PeerProcess, PeerSettings, QpsTarget, package_version
from arrwdb.bench.peers.dataset import PeerData, recall
from arrwdb.bench.peers.envs import chroma_env, ensure
from arrwdb.bench.rawhttp import RawConnection
from arrwdb.bench.serverproc import free_port

DB = "/api/v2/tenants/default_tenant/databases/default_database"


def insert_requests(collection: str, vectors: np.ndarray, batch: int) -> list[bytes]:
    path = f"{DB}/collections/{collection}/add"
    requests = []
    for start in range(0, len(vectors), batch):
        rows = range(start, min(start + batch, len(vectors)))
        body = orjson.dumps({"ids": [str(i) for i in rows], "embeddings": [float32_base64(vectors[i]) for i in rows]})
        requests.append(encode_post("127.0.0.1", path, body))
    return requests


def query_requests(collection: str, queries: np.ndarray, k: int) -> list[bytes]:
    path = f"{DB}/collections/{collection}/query"
    option = orjson.OPT_SERIALIZE_NUMPY
    return [
        encode_post(
            "127.0.0.1",
            path,
            orjson.dumps({"query_embeddings": [q], "n_results": k, "include": ["distances"]}, option=option),
        )
        for q in queries
    ]


class ChromaPeer:
    """`chroma run` from its own venv on a fresh path, loaded with the data; kept up for the QPS rounds."""

    name = "chroma"

    def __init__(self, data: PeerData, settings: PeerSettings, work_dir: Path) -> None:
        self.data = data
        self.settings = settings
        self.work_dir = work_dir
        self.results: dict[str, Any] = {}
        self.targets: dict[str, QpsTarget] = {}
        self.port = free_port()
        self._path = Path(tempfile.mkdtemp(prefix="chroma-", dir=work_dir))
        self._process: PeerProcess | None = None

    def __enter__(self) -> ChromaPeer:
        try:
            python = ensure(chroma_env(), self.work_dir.parent)
            command = [str(python.parent / "chroma"), "run", "--path", str(self._path)]
            command += ["--host", "127.0.0.1", "--port", str(self.port)]
            self._process = PeerProcess(
                command, f"http://127.0.0.1:{self.port}/api/v2/heartbeat", self.work_dir / "chroma.log"
            ).start()
        except BaseException:
            shutil.rmtree(self._path, ignore_errors=True)
            raise
        self.results = {
            "how": "chroma run (Rust server) over HTTP; inserts as base64 float32, as chromadb's HttpClient sends",
            "version": package_version(python, "chromadb"),
        }
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self.results["rss_bytes"] = self._process.rss_bytes()
            self._process.stop()
        shutil.rmtree(self._path, ignore_errors=True)

    def load(self, progress: Any) -> None:
        data, hnsw = self.data, self.settings.hnsw
        space = "l2" if data.metric == "l2" else "cosine"
        configuration: dict[str, dict[str, Any]] = {"hnsw": {"space": space}}  # {} hnsw: Chroma's own defaults
        if hnsw:
            configuration["hnsw"].update(
                max_neighbors=hnsw["m"], ef_construction=hnsw["ef_construction"], ef_search=hnsw["ef_search"]
            )
        progress.set_postfix_str("chroma hnsw: insert")
        with RawConnection("127.0.0.1", self.port) as conn:
            body = orjson.dumps({"name": "peers-hnsw", "configuration": configuration})
            collection = orjson.loads(conn.ok(encode_post("127.0.0.1", f"{DB}/collections", body)))["id"]
            inserts = insert_requests(collection, data.vectors, self.settings.batch)
            started = time.perf_counter()
            for request in inserts:
                conn.ok(request)
            insert_s = time.perf_counter() - started
            requests = query_requests(collection, data.queries, data.k)
            # Chroma indexes on write; the first query still pays for any log not yet applied.
            progress.set_postfix_str("chroma hnsw: recall")
            started = time.perf_counter()
            first = orjson.loads(conn.ok(requests[0]))
            ready_s = time.perf_counter() - started
            found = [[int(x) for x in first["ids"][0]]]
            found += [[int(x) for x in orjson.loads(conn.ok(r))["ids"][0]] for r in requests[1:]]
        self.targets["chroma hnsw"] = QpsTarget(self.port, requests)
        self.results["hnsw"] = {
            "params": {"index_type": "hnsw", **configuration["hnsw"]},
            "insert": {"docs_per_s": len(data.vectors) / insert_s, "seconds": insert_s},
            "ready_s": ready_s,
            "insert_and_index_docs_per_s": len(data.vectors) / (insert_s + ready_s),
            f"recall_at_{data.k}": recall(found, data.truth),
        }
        progress.update()
