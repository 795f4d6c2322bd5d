"""`arrwdb bench hnsw-defaults`: the curves behind the HNSW defaults per dimension band.

For each data set and graph (M, efConstruction), in process, the way the server builds and calibrates
a library (``faiss_ops.build`` with a held-out sample, ``calibrate.calibrate`` against exact search):

- build seconds on every core and bytes per row;
- the efSearch the calibration picks from the library's own rows (``sample_value``, target 0.99);
- for each efSearch of a ladder, recall@10 of the data set's *real* queries (not rows of the library)
  and milliseconds per query, one query at a time on one thread (a client alone);
- the smallest efSearch at which those queries reach recall 0.99.

The gap between the sample's efSearch and the one real queries need is what the default efSearch (the
floor under every calibration) must cover.  Data sets: ``fashion-mnist`` (784-d L2, test images as
queries), ``bible`` (384-d MiniLM vectors of KJV passages, WEB verses as queries: shorter texts in other
words, the usual gap between a RAG query and a passage), ``glove`` (50-d, held-out words), and
``ood-48`` / ``ood-384`` (clustered vectors, the queries drawn around *other* centres: the worst case
a sample of rows cannot see).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from arrwdb.bench.ann_data import AnnDataset, _normalise, bible, exact_neighbours, glove, ground_truth
from arrwdb.bench.engines import fashion_mnist
from arrwdb.bench.machine import machine_info
from arrwdb.index import calibrate, faiss_memory, faiss_ops, faiss_search
from arrwdb.index.calibrated_build import held_out

K = 10
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 200)
GRAPHS = ((16, 64), (16, 100), (32, 64), (32, 100), (32, 200))
TIMED_QUERIES = 300


def out_of_distribution(rows: int, queries: int, dimension: int, seed: int = 5) -> AnnDataset:
    """Rows around 64 centres, queries around 64 others (each centre a low-rank cluster, as
    ``ann_data.synthetic``): no sample of the rows looks like the queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(128, dimension)).astype(np.float32) * 3
    basis = rng.normal(size=(128, 8, dimension)).astype(np.float32)

    def draw(count: int, first: int) -> np.ndarray:
        labels = rng.integers(first, first + 64, size=count)
        coef = rng.normal(size=(count, 8)).astype(np.float32)
        noise = rng.normal(size=(count, dimension)).astype(np.float32) * 0.3
        return centres[labels] + np.einsum("nr,nrd->nd", coef, basis[labels]) + noise

    return AnnDataset(f"ood-{dimension}", _normalise(draw(rows, 0)), _normalise(draw(queries, 64)), "cosine")


def minilm_bible(rows: int, queries: int, cache_dir: Path = Path(".bench-cache")) -> AnnDataset:
    """Real MiniLM vectors: ``rows`` KJV passages as rows, WEB verses as queries (unit length)."""
    data = bible(cache_dir, queries=queries, passages=rows)
    return AnnDataset(data.name, _normalise(data.base), _normalise(data.queries), "cosine")


def load(name: str, rows: int, queries: int, cache_dir: Path) -> AnnDataset:
    if name == "fashion-mnist":
        return fashion_mnist(rows, queries)
    if name == "bible":
        return minilm_bible(rows, queries, cache_dir)
    if name == "glove":
        data = glove(queries=queries)
        return AnnDataset(data.name, _normalise(data.base[:rows]), _normalise(data.queries), "cosine")
    if name.startswith("ood-"):
        return out_of_distribution(rows, queries, int(name.split("-", 1)[1]))
    raise ValueError(f"unknown data set {name!r}")


def _exact_top(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    return exact_neighbours(AnnDataset("sample", base, queries, metric), k)


def run_graph(data: AnnDataset, truth: np.ndarray, m: int, ef_construction: int) -> dict[str, Any]:
    params = {"m": m, "ef_construction": ef_construction}
    rows = np.arange(len(data.base), dtype=np.int64)
    held = held_out(len(rows))
    started = time.perf_counter()
    ann = faiss_ops.build("hnsw", params, data.metric, rows, data.base, None, held)
    build_s = time.perf_counter() - started
    query_ids, sample = rows[held], data.base[held]
    # Exact neighbours among the rows the graph holds while it is calibrated (the sample is out of it).
    inside = rows[~held]
    exact_scores, positions = _exact_top(data.base[inside], sample, K + 1 + calibrate.TIE_SLOTS, data.metric)
    exact = inside[positions]
    calibration = calibrate.calibrate(
        ann, "hnsw", data.metric, params, query_ids, sample, exact, exact_scores=exact_scores
    )
    faiss_ops.add_rows(ann, query_ids, sample)
    build_s_total = time.perf_counter() - started
    curve = []
    for ef in EF_LADDER:
        _, ids = faiss_search.search(
            ann, "hnsw", data.metric, data.queries, K, ef_search=ef, nprobe=None, selector=None
        )
        reached = calibrate.recall(ids, truth)
        timed = data.queries[:TIMED_QUERIES]
        began = time.perf_counter()
        for query in timed:
            faiss_search.search(
                ann, "hnsw", data.metric, query[None], K, ef_search=ef, nprobe=None, selector=None, threads=1
            )
        ms = (time.perf_counter() - began) / len(timed) * 1e3
        curve.append({"ef_search": ef, "recall_at_10": round(reached, 4), "ms_one_query": round(ms, 4)})
    needed = next((p["ef_search"] for p in curve if p["recall_at_10"] >= 0.99), None)
    at_sample = max((p for p in curve if p["ef_search"] <= calibration.sample_value), key=lambda p: p["ef_search"])
    return {
        "m": m,
        "ef_construction": ef_construction,
        "build_s": round(build_s, 2),
        "build_and_calibrate_s": round(build_s_total, 2),
        "bytes_per_row": round(faiss_memory.memory_bytes(ann) / len(rows), 1),
        "sample_ef_search": calibration.sample_value,
        "queries_recall_at_sample_ef": at_sample["recall_at_10"],
        "queries_ef_for_0.99": needed,
        "curve": curve,
    }


def run_hnsw_defaults(
    output: Path, datasets: tuple[str, ...], rows: int, queries: int, cache_dir: Path
) -> dict[str, Any]:
    import orjson

    report: dict[str, Any] = {
        "benchmark": "hnsw-defaults",
        "machine": machine_info(),
        "load_average_before": os.getloadavg(),
        "settings": {"rows": rows, "queries": queries, "k": K, "graphs": GRAPHS, "ef_ladder": EF_LADDER},
        "results": {},
    }
    for name in datasets:
        data = load(name, rows, queries, cache_dir)
        truth = ground_truth(data, K)
        report["results"][data.name] = {
            "dimension": data.base.shape[1],
            "rows": len(data.base),
            "graphs": [run_graph(data, truth, m, efc) for m, efc in GRAPHS],
        }
        report["load_average_after"] = os.getloadavg()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(format_hnsw_defaults({"results": {data.name: report["results"][data.name]}}), flush=True)
    return report


def format_hnsw_defaults(report: dict[str, Any]) -> str:
    lines = []
    for name, entry in report["results"].items():
        lines.append(f"{name} ({entry['dimension']}-d, {entry['rows']} rows)")
        for g in entry["graphs"]:
            curve = " ".join(f"{p['ef_search']}:{p['recall_at_10']:.3f}/{p['ms_one_query']:.2f}ms" for p in g["curve"])
            lines.append(
                f"  M {g['m']:>2} efC {g['ef_construction']:>3}: build {g['build_s']:6.2f} s, sample ef "
                f"{g['sample_ef_search']:>4} (queries' recall there {g['queries_recall_at_sample_ef']:.3f}), "
                f"queries reach 0.99 at ef {g['queries_ef_for_0.99']}\n    {curve}"
            )
    return "\n".join(lines)
