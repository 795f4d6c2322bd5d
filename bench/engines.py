"""`arrwdb bench engines`: CPU HNSW engines side by side, in process, at equal recall@10.

Engines: FAISS ``IndexHNSWFlat`` (arrwdb's; built on float32 rows, and with its links made on a bfloat16
copy as arrwdb builds cosine graphs), hnswlib and usearch (f32, and f16 / i8 storage whose
k * 4 candidates are re-scored exactly from float32 rows, as arrwdb re-scores compressed indexes).
Each is built with the same graph (M, efConstruction) on every core; then for each efSearch of a
ladder: recall@10 against exact search, queries/s one query at a time on one thread (one client) and
as one batch on every core (many clients), until recall 0.99.  Bytes per row: the engine's serialised
index (an f16 / i8 index adds the float32 rows it re-scores from).

Data sets: ``minilm-like`` (clustered 384-d unit vectors, ``ann_data.synthetic``) and
``fashion-mnist`` (784-d, Debian's ``dataset-fashion-mnist``: train images as rows, test images as
queries, L2).
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arrwdb.bench.ann_data import AnnDataset, _normalise, ground_truth, synthetic
from arrwdb.bench.machine import machine_info

EF_LADDER = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
FASHION = Path("/usr/share/datasets/fashion-mnist")
K = 10


def fashion_mnist(rows: int, queries: int) -> AnnDataset:
    def images(name: str) -> np.ndarray:
        raw = gzip.open(FASHION / name).read()
        return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0

    return AnnDataset(
        "fashion-mnist-784",
        images("train-images-idx3-ubyte.gz")[:rows],
        images("t10k-images-idx3-ubyte.gz")[:queries],
        "l2",
    )


def minilm_like(rows: int, queries: int) -> AnnDataset:
    data = synthetic(rows, queries, dimension=384, seed=3)
    return AnnDataset("minilm-like-384", _normalise(data.base), _normalise(data.queries), "cosine")


class Engine:
    """build(vectors) once, then search(queries, k, ef, threads) -> ids [q, k]; nbytes."""

    name = ""

    def build(self, vectors: np.ndarray, metric: str, m: int, ef_construction: int) -> None: ...

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray: ...

    def nbytes(self) -> int: ...


class FaissEngine(Engine):
    name = "faiss-hnsw-f32"

    def build(self, vectors: np.ndarray, metric: str, m: int, ef_construction: int) -> None:
        import faiss

        self.faiss = faiss
        kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], m, kind)
        self.index.hnsw.efConstruction = ef_construction
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        self.index.add(vectors)

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray:
        self.faiss.omp_set_num_threads(threads)
        params = self.faiss.SearchParametersHNSW(efSearch=max(ef, k))
        return self.index.search(queries, k, params=params)[1]

    def nbytes(self) -> int:
        return int(self.faiss.serialize_index(self.index).nbytes)


class FaissBf16LinksEngine(FaissEngine):
    """The same float32 ``IndexHNSWFlat``, its links made on a bfloat16 copy of the rows
    (``arrwdb.index.graph_insert``; the server does so on inner-product graphs only); searches read the
    float32 rows."""

    name = "faiss-hnsw-f32-bf16-links"

    def build(self, vectors: np.ndarray, metric: str, m: int, ef_construction: int) -> None:
        import faiss

        from arrwdb.index.graph_insert import add_to_graph

        self.faiss = faiss
        kind = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        graph = faiss.IndexHNSWFlat(vectors.shape[1], m, kind)
        graph.hnsw.efConstruction = ef_construction
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        mapped = faiss.IndexIDMap2(graph)
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        add_to_graph(mapped, rows, np.arange(len(vectors)), None, bfloat16_links=True)  # on L2 graphs too
        self.index, self._mapped = graph, mapped  # ids are the row numbers: search the graph itself


class HnswlibEngine(Engine):
    name = "hnswlib-f32"

    def build(self, vectors: np.ndarray, metric: str, m: int, ef_construction: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="l2" if metric == "l2" else "ip", dim=vectors.shape[1])
        self.index.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction)
        self.index.add_items(vectors, np.arange(len(vectors)), num_threads=os.cpu_count() or 1)

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray:
        self.index.set_ef(max(ef, k))
        return self.index.knn_query(queries, k=k, num_threads=threads)[0].astype(np.int64)

    def nbytes(self) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.bin"
            self.index.save_index(str(path))
            return path.stat().st_size


class UsearchEngine(Engine):
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.name = f"usearch-{dtype}" + ("" if dtype == "f32" else "+rescore")

    def build(self, vectors: np.ndarray, metric: str, m: int, ef_construction: int) -> None:
        from usearch.index import Index

        self.metric = metric
        self.vectors = vectors
        self.index = Index(
            ndim=vectors.shape[1],
            metric="l2sq" if metric == "l2" else "ip",
            dtype=self.dtype,
            connectivity=m,
            expansion_add=ef_construction,
        )
        self.index.add(np.arange(len(vectors)), vectors, threads=os.cpu_count() or 1)

    def search(self, queries: np.ndarray, k: int, ef: int, threads: int) -> np.ndarray:
        self.index.expansion_search = max(ef, k)
        fetch = k if self.dtype == "f32" else k * 4
        keys = self.index.search(queries, fetch, threads=threads).keys.reshape(len(queries), fetch).astype(np.int64)
        if self.dtype == "f32":
            return keys
        rows = self.vectors[np.maximum(keys, 0)]  # exact float32 re-scoring of the candidates
        if self.metric == "l2":
            scores = -((rows - queries[:, None, :]) ** 2).sum(axis=2)
        else:
            scores = np.einsum("qcd,qd->qc", rows, queries)
        scores = np.where(keys >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(keys, order, 1)

    def nbytes(self) -> int:
        buffer = self.index.save()
        size = len(buffer) if buffer is not None else 0
        return size + (0 if self.dtype == "f32" else self.vectors.nbytes)


def available_engines() -> list[Callable[[], Engine]]:
    engines: list[Callable[[], Engine]] = [FaissEngine, FaissBf16LinksEngine]
    try:
        import hnswlib  # noqa: F401

        engines.append(HnswlibEngine)
    except ImportError:
        pass
    try:
        import usearch  # noqa: F401

        engines += [lambda: UsearchEngine("f32"), lambda: UsearchEngine("f16"), lambda: UsearchEngine("i8")]
    except ImportError:
        pass
    return engines


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def _one_by_one_qps(engine: Engine, queries: np.ndarray, ef: int, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.search(queries[done % len(queries) : done % len(queries) + 1], K, ef, 1)
        done += 1
    return done / (time.perf_counter() - started)


def run_engine(
    make: Callable[[], Engine], data: AnnDataset, truth: np.ndarray, m: int, ef_construction: int, seconds: float
) -> dict[str, Any]:
    engine = make()
    started = time.perf_counter()
    engine.build(data.base, data.metric, m, ef_construction)
    build_s = time.perf_counter() - started
    curve = []
    for ef in EF_LADDER:
        started = time.perf_counter()
        found = engine.search(data.queries, K, ef, os.cpu_count() or 1)
        batch_qps = len(data.queries) / (time.perf_counter() - started)
        point = {
            "ef_search": ef,
            "recall_at_10": _recall(found, truth),
            "qps_batch_all_cores": batch_qps,
            "qps_one_client": _one_by_one_qps(engine, data.queries, ef, seconds),
        }
        curve.append(point)
        if point["recall_at_10"] >= 0.99:
            break
    nbytes = engine.nbytes()
    return {
        "engine": engine.name,
        "build_s": build_s,
        "rows_per_s": len(data.base) / build_s,
        "bytes_per_row": nbytes / len(data.base),
        "raw_bytes_per_row": data.base.shape[1] * 4,
        "curve": curve,
        "at_recall": {str(t): _first_reaching(curve, t) for t in (0.95, 0.99)},
    }


def _first_reaching(curve: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    return next((p for p in curve if p["recall_at_10"] >= target), None)


def run_engines(
    output: Path,
    rows: int,
    queries: int,
    m: int,
    ef_construction: int,
    seconds: float,
    datasets: tuple[str, ...],
    only: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``only``: the engines to run, by name (all available ones when empty)."""
    makers = {"minilm-like": minilm_like, "fashion-mnist": fashion_mnist}
    report: dict[str, Any] = {
        "benchmark": "engines",
        "machine": machine_info(),
        "settings": {"rows": rows, "queries": queries, "m": m, "ef_construction": ef_construction, "k": K},
        "results": {},
    }
    for name in datasets:
        data = makers[name](rows, queries)
        truth = ground_truth(data, K)
        makes = [make for make in available_engines() if not only or make().name in only]
        report["results"][data.name] = [run_engine(make, data, truth, m, ef_construction, seconds) for make in makes]
        output.parent.mkdir(parents=True, exist_ok=True)
        import orjson

        output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def _cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return f"{'-':>4} {'-':>6} {'-':>7}"
    return f"{point['ef_search']:>4} {point['qps_one_client']:>6.0f} {point['qps_batch_all_cores']:>7.0f}"


def format_engines(report: dict[str, Any]) -> str:
    out = io.StringIO()
    head = f"{'ef':>4} {'q/s 1':>6} {'q/s all':>7}"
    for dataset, rows in report["results"].items():
        out.write(f"{dataset}\n  {'engine':<22} {'build_s':>8} {'B/row':>7} | r>=0.95 {head} | r>=0.99 {head}\n")
        for r in rows:
            cells = [_cell(r["at_recall"][t]) for t in ("0.95", "0.99")]
            line = f"  {r['engine']:<22} {r['build_s']:>8.1f} {r['bytes_per_row']:>7.0f} | {cells[0]} | {cells[1]}"
            out.write(line + "\n")
    return out.getvalue()
