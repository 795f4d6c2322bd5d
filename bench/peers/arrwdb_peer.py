"""arrwdb in the peers run: an HNSW library (the comparison) and a brute-force one (exact reference)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from arrwdb.bench.peers.common import PeerSettings, QpsTarget
from arrwdb.bench.peers.dataset import PeerData, recall
from arrwdb.bench.rawhttp import RawConnection
from arrwdb.bench.serverproc import ServerProcess
from arrwdb.bench.suite import Library, serves_light_graph

INDEX_TYPES = ("hnsw", "brute_force")


def _found(body: bytes) -> list[int]:
    return [int(hit["document_id"][1:]) for hit in orjson.loads(body)["results"]]


class ArrwdbPeer:
    """`arrwdb serve` on a fresh data dir, loaded with both libraries; kept up for the QPS rounds."""

    name = "arrwdb"

    def __init__(self, data: PeerData, settings: PeerSettings, work_dir: Path) -> None:
        self.data = data
        self.settings = settings
        self.work_dir = work_dir
        self.results: dict[str, Any] = {
            "how": "arrwdb serve over HTTP (defaults but ARRWDB_RESULT_CACHE_BYTES=0), documents/batch with "
            "base64 float32 vectors (embedding_base64; Milvus sends binary over gRPC), JSON query vectors"
        }
        self.targets: dict[str, QpsTarget] = {}
        self._data_dir = Path(tempfile.mkdtemp(prefix="arrwdb-", dir=work_dir))
        # The load cycles through the query pool: with arrwdb's search-result cache on, every query
        # after the first pass would be a cache hit, and no peer has such a cache.  Measure the search.
        env = {"ARRWDB_RESULT_CACHE_BYTES": "0"}
        self.server = ServerProcess(self._data_dir, env=env, log_path=work_dir / "arrwdb.server.log")

    def __enter__(self) -> ArrwdbPeer:
        try:
            self.server.start()
        except BaseException:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.results["rss_bytes"] = self.server.rss_bytes()
        self.server.stop()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def load(self, progress: Any) -> None:
        with RawConnection("127.0.0.1", self.server.port) as conn:
            for index_type in INDEX_TYPES:
                self.results[index_type] = self._load_library(conn, index_type, progress)
                progress.update()

    def _load_library(self, conn: RawConnection, index_type: str, progress: Any) -> dict[str, Any]:
        data, settings = self.data, self.settings
        hnsw = settings.hnsw
        params = {k: hnsw[k] for k in ("m", "ef_construction", "ef_search")} if index_type == "hnsw" and hnsw else {}
        library = Library(conn, f"peers-{index_type}")
        library.create(settings.dimension, index_type, params, metric=data.metric)
        inserts = library.insert_requests(data.vectors, settings.batch, base64_vectors=True)
        progress.set_postfix_str(f"arrwdb {index_type}: insert")
        started = time.perf_counter()
        for request in inserts:
            conn.ok(request)
        insert_s = time.perf_counter() - started
        ready_s, fresh_rows, calibration = 0.0, None, None
        if index_type != "brute_force":
            progress.set_postfix_str(f"arrwdb {index_type}: waiting for the index build")
            # A named data set (issue 29's comparison) waits for every row in the calibrated graph; the
            # clustered default keeps the peers run's criterion (a few rows may stay fresh).
            ann = library.wait_ann(len(data.vectors), settings.ready_timeout_s, every_row=bool(data.name))
            if ann["timed_out"]:
                raise RuntimeError(f"the {index_type} index was not built within {settings.ready_timeout_s:.0f} s")
            ready_s, fresh_rows = ann["ready_s"], ann["fresh_rows"]
            calibration = ann["index"].get("calibration")  # the search effort its queries run at
        progress.set_postfix_str(f"arrwdb {index_type}: recall")
        requests = library.search_requests(data.queries, data.k)
        found = [_found(conn.ok(request)) for request in requests]
        light: dict[str, Any] = {}
        if index_type == "hnsw" and serves_light_graph(ann["index"]):
            # Indexed in a light import graph: its recall counts, and the searches below run on the graph
            # it is upgraded to, as they would on a library that has settled.
            light = {f"recall_at_{data.k}_indexed": recall(found, data.truth), "indexed_calibration": calibration}
            progress.set_postfix_str(f"arrwdb {index_type}: waiting for the full graph")
            full = library.wait_full_graph(settings.ready_timeout_s)
            if full is None:
                raise RuntimeError(f"the hnsw graph was not upgraded within {settings.ready_timeout_s:.0f} s")
            light["full_graph_s"] = time.perf_counter() - started  # from the first insert (ready_s: from the last)
            calibration = full.get("calibration")
            found = [_found(conn.ok(request)) for request in requests]
        self.targets[f"arrwdb {index_type}"] = QpsTarget(self.server.port, requests)
        return {
            "params": {"index_type": index_type, **params},
            "insert": {"docs_per_s": len(data.vectors) / insert_s, "seconds": insert_s},
            "ready_s": ready_s,
            # rows not yet folded into the graph (arrwdb searches them exactly beside it, by design)
            "fresh_rows": fresh_rows,
            "calibration": calibration,
            "insert_and_index_docs_per_s": len(data.vectors) / (insert_s + ready_s),
            f"recall_at_{data.k}": recall(found, data.truth),
            **light,
        }
