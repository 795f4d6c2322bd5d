"""`arrwdb bench indexed`: how soon a bulk import is inserted AND indexed.

A server on a fresh data dir gets one HNSW library (default index_params, the data set's metric); the
rows go in over HTTP in ``documents/batch`` requests of ``batch`` rows (base64 float32), one after the
other, while a second connection polls the library's statistics every ``poll_s``.  Figures, in seconds
from the first insert:

- ``insert_s``: the last insert acknowledged;
- ``indexed_s``: statistics first say the ANN graph holds every row (``ann_rows`` = rows, no fresh row);
- ``folded_s``: the graph holds all but fewer fresh rows than a server folds into it on its own (the
  criterion of ``arrwdb bench peers``: ``Library.wait_ann``); the few left are searched exactly beside
  the graph.  Where ``indexed_s`` is never reached (the remainder stays fresh), ``folded_s`` says when
  the import was as indexed as it gets;

then recall@10 of ``queries`` searches against exact search, and the polled timeline.  With
``--baseline-python`` the same import runs first on that interpreter's arrwdb (another checkout's
venv), so that a change is measured against what it changes on the same machine in one run.
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.bench.ann_data import AnnDataset
from arrwdb.bench.machine import machine_info
from arrwdb.bench.rawhttp import RawConnection
from arrwdb.bench.serverproc import ServerProcess
from arrwdb.bench.suite import Library, exact_top_k, serves_light_graph

K = 10
DATASETS = ("fashion-mnist", "minilm-like")


def load_dataset(name: str, rows: int, queries: int) -> AnnDataset:
    from arrwdb.bench.engines import fashion_mnist, minilm_like
    from arrwdb.bench.hnsw_defaults import minilm_bible

    makers = {"fashion-mnist": fashion_mnist, "minilm-like": minilm_like, "minilm-bible": minilm_bible}
    if name not in makers:
        raise ValueError(f"unknown data set {name!r} (known: {', '.join(makers)})")
    return makers[name](rows, queries)


def exact_truth(data: AnnDataset, k: int = K) -> np.ndarray:
    """Row indices of the exact top ``k`` of each query, by the data set's metric."""
    if data.metric == "l2":
        base_sq = np.einsum("ij,ij->i", data.base, data.base)
        order = []
        for start in range(0, len(data.queries), 256):
            q = data.queries[start : start + 256]
            dist = base_sq[None, :] - 2.0 * q @ data.base.T
            top = np.argpartition(dist, k, axis=1)[:, :k]
            order.append(np.take_along_axis(top, np.argsort(np.take_along_axis(dist, top, 1), axis=1), 1))
        return np.concatenate(order).astype(np.int64)
    return exact_top_k(data.base, data.queries, k).astype(np.int64)


class _Poller:
    """Polls a library's index statistics on its own connection until stopped; keeps the timeline."""

    def __init__(self, port: int, name: str, poll_s: float) -> None:
        self.port, self.name, self.poll_s = port, name, poll_s
        self.timeline: list[dict[str, Any]] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, started: float) -> None:
        self.started = started
        self._thread.start()

    def _run(self) -> None:
        with RawConnection("127.0.0.1", self.port) as conn:
            library = Library(conn, self.name)
            while not self._stop.is_set():
                index = library.statistics()["index"]
                self.timeline.append(
                    {
                        "t": round(time.perf_counter() - self.started, 3),
                        "state": index.get("state"),
                        "ann_rows": index.get("ann_rows", 0),
                        "fresh_rows": index.get("fresh_rows"),
                        "builds": index.get("builds"),
                        "calibrated_rows": index.get("calibrated_rows"),
                        "upgrading": index.get("upgrading"),
                        "graph_ef_construction": index.get("graph_ef_construction"),
                        "ef_construction": index.get("ef_construction"),
                    }
                )
                self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _first(timeline: list[dict[str, Any]], rows: int, test: Any) -> float | None:
    return next((p["t"] for p in timeline if p["ann_rows"] + (p["fresh_rows"] or 0) == rows and test(p)), None)


def _indexed(p: dict[str, Any]) -> bool:
    """Every row in the graph, and the graph calibrated as it is (where the server says so); the graph
    may be a light one that is being rebuilt at the library's efConstruction (``upgrading``)."""
    calibrated = p.get("calibrated_rows")
    serving = p["state"] == "ann" or bool(p.get("upgrading"))
    return serving and p["fresh_rows"] == 0 and (calibrated is None or calibrated == p["ann_rows"])


def _full_graph(p: dict[str, Any]) -> bool:
    """Indexed, in a graph built at the library's own efConstruction (not a light import graph)."""
    return _indexed(p) and p["state"] == "ann" and not serves_light_graph(p)


def _folded(p: dict[str, Any]) -> bool:
    return p["state"] == "ann" and (p["fresh_rows"] or 0) < max(2048, 0.05 * p["ann_rows"])


def import_once(
    data: AnnDataset,
    truth: np.ndarray,
    batch: int,
    poll_s: float,
    timeout_s: float,
    quiet_s: float,
    work_dir: Path,
    python: str | None = None,
    index_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One import into a fresh server (``python``: another checkout's interpreter) and its figures."""
    rows = len(data.base)
    with tempfile.TemporaryDirectory(prefix="indexed-", dir=work_dir) as data_dir:
        server = ServerProcess(
            Path(data_dir), env={"ARRWDB_RESULT_CACHE_BYTES": "0"}, log_path=work_dir / "server.log", python=python
        )
        with server, RawConnection("127.0.0.1", server.port) as conn:
            library = Library(conn, "indexed")
            library.create(data.base.shape[1], "hnsw", index_params, metric=data.metric)
            inserts = library.insert_requests(data.base, batch, base64_vectors=True)
            poller = _Poller(server.port, "indexed", poll_s)
            started = time.perf_counter()
            poller.start(started)
            for request in inserts:
                conn.ok(request)
            insert_s = time.perf_counter() - started
            # Wait for every row in the graph; or, if the graph stops growing with a few rows left
            # fresh (a server that leaves a small remainder to exact search), ``quiet_s`` after that.
            while time.perf_counter() - started < insert_s + timeout_s:
                time.sleep(poll_s)
                timeline = list(poller.timeline)
                if _first(timeline, rows, _indexed) is not None:
                    break
                last = timeline[-1] if timeline else None
                changed = max((q["t"] for p, q in itertools.pairwise(timeline) if _key(p) != _key(q)), default=0.0)
                if last is not None and _folded(last) and last["t"] - max(changed, insert_s) >= quiet_s:
                    break
            searches = library.search_requests(data.queries, K)
            # The recall as soon as every row is indexed (a light graph being upgraded, where the server
            # builds one), then once the graph is built at the library's own efConstruction.
            found_indexed = [_doc_rows(conn.ok(r)) for r in searches]
            # (A server whose statistics do not name the graph's efConstruction builds no light graph.)
            light = any(p.get("graph_ef_construction") is not None for p in poller.timeline)
            while light and time.perf_counter() - started < insert_s + timeout_s:
                if _first(list(poller.timeline), rows, _full_graph) is not None:
                    break
                time.sleep(poll_s)
            poller.stop()
            statistics = library.statistics()["index"]
            found = [_doc_rows(conn.ok(r)) for r in searches]
            rss = server.rss_bytes()
    timeline = poller.timeline
    indexed_s = _first(timeline, rows, _indexed)
    return {
        "server_python": python or "this checkout",
        "insert_s": insert_s,
        "insert_rows_per_s": rows / insert_s,
        "indexed_s": indexed_s,
        "folded_s": _first(timeline, rows, _folded),
        "indexed_rows_per_s": rows / indexed_s if indexed_s else None,
        "behind_last_insert_s": indexed_s - insert_s if indexed_s else None,
        "final": {
            k: statistics.get(k)
            for k in ("state", "ann_rows", "fresh_rows", "builds", "ef_search", "graph_ef_construction")
        },
        "calibration": statistics.get("calibration"),
        "full_graph_s": _first(timeline, rows, _full_graph),
        f"recall_at_{K}_indexed": _recall(found_indexed, truth),
        f"recall_at_{K}": _recall(found, truth),
        "rss_bytes": rss,
        "timeline": timeline,
    }


def _key(p: dict[str, Any]) -> tuple[Any, ...]:
    return (p["state"], p["ann_rows"], p["fresh_rows"], p["builds"], p.get("upgrading"))


def _doc_rows(body: bytes) -> list[int]:
    return [int(hit["document_id"][1:]) for hit in orjson.loads(body)["results"]]


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f[:K]) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (K * len(truth))


def checkout_commit(python: str | None) -> str | None:
    """The git commit of the checkout an interpreter's arrwdb comes from (None: this process's)."""
    import arrwdb

    root = str(Path(arrwdb.__file__).parents[1])
    try:
        if python is not None:
            code = "import arrwdb, pathlib; print(pathlib.Path(arrwdb.__file__).parents[1])"
            root = subprocess.run([python, "-P", "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
        done = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_indexed(
    output: Path,
    datasets: tuple[str, ...],
    rows: int,
    queries: int,
    batch: int = 1000,
    poll_s: float = 0.1,
    timeout_s: float = 300.0,
    quiet_s: float = 10.0,
    baseline_python: str | None = None,
    work_dir: Path = Path(".bench-cache/indexed"),
    index_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    work_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "benchmark": "indexed",
        "machine": machine_info(),
        "settings": {
            "rows": rows,
            "queries": queries,
            "batch": batch,
            "poll_s": poll_s,
            "k": K,
            "index": "hnsw",
            "index_params": index_params or "the server's defaults",
        },
        "commits": {"this": checkout_commit(None)},
        "results": {},
    }
    if baseline_python:
        report["commits"]["baseline"] = checkout_commit(baseline_python)
    for name in datasets:
        data = load_dataset(name, rows, queries)
        truth = exact_truth(data)
        runs: dict[str, Any] = {"metric": data.metric, "dimension": int(data.base.shape[1])}
        if baseline_python:
            runs["baseline"] = import_once(
                data, truth, batch, poll_s, timeout_s, quiet_s, work_dir, baseline_python, index_params
            )
        runs["this"] = import_once(data, truth, batch, poll_s, timeout_s, quiet_s, work_dir, None, index_params)
        report["results"][data.name] = runs
        report["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def _seconds(value: float | None) -> str:
    return f"{value:>8.1f}" if value is not None else f"{'never':>8}"


def format_indexed(report: dict[str, Any]) -> str:
    out = io.StringIO()
    out.write(
        f"{'data set':<20} {'server':<9} {'insert_s':>8} {'folded_s':>8} {'indexed_s':>9} {'recall':>7} "
        f"{'full_graph_s':>12} {'recall':>7}\n"
    )
    for dataset, runs in report["results"].items():
        for label in ("baseline", "this"):
            r = runs.get(label)
            if r is None:
                continue
            out.write(
                f"{dataset:<20} {label:<9} {r['insert_s']:>8.1f} {_seconds(r['folded_s'])} "
                f"{_seconds(r['indexed_s'])} {r.get('recall_at_10_indexed', r['recall_at_10']):>7.4f} "
                f"{_seconds(r.get('full_graph_s')):>12} {r['recall_at_10']:>7.4f}\n"
            )
    return out.getvalue()
