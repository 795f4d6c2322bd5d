"""`arrwdb bench ann`: recall@10 against throughput for the ANN index types, sweeping ef_search (HNSW)
and nprobe (IVF), three ways on the same built index:

- raw FAISS in process (the ceiling: the bare index object, no id map, no selector, no Python around it);
- arrwdb's index in process (AnnIndex: what the device worker calls);
- through the server with N concurrent clients (HTTP, batching, JSON), loading the same index from a
  snapshot so that every curve measures one and the same graph or list structure.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from arrwdb.bench.ann_data import AnnDataset, bible, glove, ground_truth, normalised, synthetic
from arrwdb.bench.datasets import DEFAULT_TENANT
from arrwdb.bench.loadgen import closed_loop, encode_post
from arrwdb.bench.machine import machine_info
from arrwdb.bench.serverproc import ServerProcess

SWEEPS: dict[str, tuple[str, list[int]]] = {
    "hnsw": ("ef_search", [16, 32, 64, 128, 256, 512]),
    "ivf": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128]),
}
LIBRARY = "ann"


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _timed_batches(search: Any, queries: np.ndarray, batch: int, min_seconds: float) -> tuple[np.ndarray, float]:
    """Search all queries in batches (repeating until ``min_seconds``): (ids of the first pass, QPS)."""
    found = []
    started = time.perf_counter()
    done = 0
    passes = 0
    while True:
        for start in range(0, len(queries), batch):
            ids = search(queries[start : start + batch])
            if passes == 0:
                found.append(ids)
            done += len(ids)
        passes += 1
        if time.perf_counter() - started >= min_seconds:
            break
    return np.concatenate(found), done / (time.perf_counter() - started)


def _build(data: AnnDataset, index_type: str) -> tuple[Any, np.ndarray]:
    from arrwdb.index import faiss_ops

    rows = np.arange(1, len(data.base) + 1, dtype=np.int64)
    base = normalised(data).base
    started = time.perf_counter()
    ann = faiss_ops.build(index_type, {}, data.metric, rows, base)
    print(f"  built {index_type} over {len(rows)} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return ann, rows


def _raw_search(ann: Any, index_type: str, param: str, value: int) -> Any:
    import faiss

    inner = faiss.downcast_index(ann.index) if index_type == "hnsw" else ann
    if index_type == "hnsw":
        inner.hnsw.efSearch = value
    else:
        inner.nprobe = value

    def search(queries: np.ndarray) -> np.ndarray:
        faiss.omp_set_num_threads(1 if len(queries) == 1 else 2)
        _, ids = inner.search(queries, 10)
        return ids + (1 if index_type == "hnsw" else 0)  # the bare graph numbers rows from 0

    return search


def _arrwdb_index(data: AnnDataset, index_type: str, ann: Any, rows: np.ndarray) -> Any:
    import torch

    from arrwdb.index.ann import AnnIndex
    from arrwdb.records import LibraryRecord

    record = LibraryRecord("bench", DEFAULT_TENANT, LIBRARY, data.base.shape[1], index_type, data.metric, {}, "now")
    index = AnnIndex(record, torch.device("cpu"))
    index.add(rows, data.base)
    index.install(ann, rows, len(rows))
    return index


def _ours(index: Any, params: dict[str, int]) -> Any:
    return lambda queries: index.search(queries, 10, None, params)[1]


def _prepare_server_dir(data: AnnDataset, index_type: str, ann: Any, rows: np.ndarray, data_dir: Path) -> None:
    from arrwdb.bench.datasets import build_vector_store
    from arrwdb.index import faiss_ops

    build_vector_store(data_dir, LIBRARY, data.base, metric=data.metric, index_type=index_type)
    meta = {
        "library_id": f"bench-{LIBRARY}",
        "index_type": index_type,
        "metric": data.metric,
        "dimension": data.base.shape[1],
        "index_params": {},
        "trained_rows": len(rows),
    }
    faiss_ops.save(ann, rows, meta, data_dir / "indexes" / f"bench-{LIBRARY}.ann")


def _wait_ann(url: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = httpx.get(f"{url}/v1/libraries/{LIBRARY}/statistics", timeout=30).json()
        if stats["index"].get("state") == "ann" and stats["index"].get("fresh_rows", 0) == 0:
            return stats
        time.sleep(0.5)
    raise RuntimeError("the server never loaded its ANN index")


def _server_recall(url: str, queries: np.ndarray, truth: np.ndarray, params: dict[str, int]) -> float:
    found = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(queries), 100):
            body = {
                "queries": [
                    {"embedding": q, "k": 10, "include_text": False, "params": params}
                    for q in queries[start : start + 100]
                ]
            }
            response = client.post(
                f"/v1/libraries/{LIBRARY}/search/batch",
                content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                headers={"content-type": "application/json"},
            )
            response.raise_for_status()
            for hits in response.json()["results"]:
                ids = [int(h["document_id"][1:]) + 1 for h in hits]
                found.append(ids + [-1] * (10 - len(ids)))
    return _recall(np.asarray(found), truth)


def run_dataset(
    data: AnnDataset,
    index_types: tuple[str, ...],
    cache_dir: Path,
    clients: int,
    seconds: float,
    recall_queries: int,
    batch: int,
) -> dict[str, Any]:
    print(f"{data.name}: base {data.base.shape}, {len(data.queries)} queries", flush=True)
    truth = ground_truth(data, 10) + 1  # row ids start at 1
    queries = normalised(data).queries[:recall_queries]
    truth = truth[:recall_queries]
    out: dict[str, Any] = {"base": list(data.base.shape), "queries": len(data.queries), "curves": {}}
    if data.answers is not None:
        top1 = truth[: len(data.answers), 0] - 1
        out["exact_top1_is_the_answer"] = float(np.mean(top1 == data.answers[: len(top1)]))
    for index_type in index_types:
        param, values = SWEEPS[index_type]
        ann, rows = _build(data, index_type)
        index = _arrwdb_index(data, index_type, ann, rows)
        curves: dict[str, list[dict[str, Any]]] = {"faiss": [], "faiss_b1": [], "arrwdb": [], "server": []}
        for value in values:
            raw = _raw_search(ann, index_type, param, value)
            found, qps = _timed_batches(raw, queries, batch, 1.0)
            curves["faiss"].append({param: value, "batch": batch, "qps": qps, "recall": _recall(found, truth)})
            found, qps = _timed_batches(raw, queries[:200], 1, 0.5)
            curves["faiss_b1"].append({param: value, "batch": 1, "qps": qps, "recall": _recall(found, truth[:200])})
            found, qps = _timed_batches(_ours(index, {param: value}), queries, batch, 1.0)
            curves["arrwdb"].append({param: value, "batch": batch, "qps": qps, "recall": _recall(found, truth)})
        data_dir = cache_dir / f"ann-{data.name}-{index_type}"
        _prepare_server_dir(data, index_type, ann, rows, data_dir)
        with ServerProcess(data_dir, env={"ARRWDB_EMBED_CACHE_BYTES": "0", "ARRWDB_RESULT_CACHE_BYTES": "0"}) as server:
            _wait_ann(server.url)
            for value in values:
                params = {param: value}
                recall = _server_recall(server.url, queries[:1000], truth[:1000], params)
                bodies = [
                    encode_post(
                        "127.0.0.1",
                        f"/v1/libraries/{LIBRARY}/search",
                        orjson.dumps(
                            {"embedding": q, "k": 10, "include_text": False, "params": params},
                            option=orjson.OPT_SERIALIZE_NUMPY,
                        ),
                    )
                    for q in queries[:1000]
                ]
                load = asyncio.run(closed_loop("127.0.0.1", server.port, bodies, clients, seconds, warmup=1.0))
                summary = load.summary()
                curves["server"].append(
                    {param: value, "clients": clients, "qps": summary["qps"], "recall": recall,
                     "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
                     "mean_batch_size": summary["mean_batch_size"], "statuses": summary["statuses"]}
                )  # fmt: skip
                print(
                    f"  {index_type} {param}={value}: server {summary['qps']:.0f} qps recall {recall:.3f}", flush=True
                )
        out["curves"][index_type] = curves
    return out


def best_qps_at(curve: list[dict[str, Any]], recall: float) -> float | None:
    eligible = [p["qps"] for p in curve if p["recall"] >= recall]
    return max(eligible) if eligible else None


def summary_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for dataset, result in report["datasets"].items():
        for index_type, curves in result["curves"].items():
            for target in (0.9, 0.95, 0.99):
                row: dict[str, Any] = {"dataset": dataset, "index": index_type, "recall": target}
                for name, curve in curves.items():
                    row[name] = best_qps_at(curve, target)
                rows.append(row)
    return rows


def server_vs_faiss(report: dict[str, Any], dataset_prefix: str = "glove", target: float = 0.95) -> dict[str, Any]:
    """The issue's target: server HNSW QPS at 64 clients vs raw FAISS at the same ef_search and batch,
    at the smallest ef_search whose server recall reaches ``target``."""
    for dataset, result in report["datasets"].items():
        if not dataset.startswith(dataset_prefix) or "hnsw" not in result["curves"]:
            continue
        curves = result["curves"]["hnsw"]
        for server_point in curves["server"]:
            if server_point["recall"] >= target:
                ef = server_point["ef_search"]
                raw = next(p for p in curves["faiss"] if p["ef_search"] == ef)
                return {"dataset": dataset, "ef_search": ef, "server_qps": server_point["qps"], "faiss_qps": raw["qps"],
                        "ratio": server_point["qps"] / raw["qps"], "server_recall": server_point["recall"]}  # fmt: skip
    return {}


def run_ann(
    output: Path,
    cache_dir: Path,
    datasets: tuple[str, ...] = ("glove", "bible"),
    index_types: tuple[str, ...] = ("hnsw", "ivf"),
    clients: int = 64,
    seconds: float = 4.0,
    recall_queries: int = 2000,
    batch: int = 64,
) -> dict[str, Any]:
    output.parent.mkdir(parents=True, exist_ok=True)
    loaders = {"glove": glove, "bible": lambda: bible(cache_dir), "synthetic": synthetic}
    report: dict[str, Any] = {
        "benchmark": "ann",
        "machine": machine_info(),
        "settings": {"clients": clients, "seconds": seconds, "recall_queries": recall_queries, "batch": batch, "k": 10,
                     "sweeps": SWEEPS},
        "datasets": {},
    }  # fmt: skip
    for name in datasets:
        data = loaders[name]()
        report["datasets"][data.name] = run_dataset(
            data, index_types, cache_dir, clients, seconds, recall_queries, batch
        )
    report["table"] = summary_table(report)
    report["target"] = server_vs_faiss(report)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    plot(report, output.with_suffix(".png"))
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(d, t) for d, r in report["datasets"].items() for t in r["curves"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (dataset, index_type) in zip(axes[0], panels, strict=True):
        curves = report["datasets"][dataset]["curves"][index_type]
        for name, style in (("faiss", "k--"), ("arrwdb", "b-"), ("server", "r-o"), ("faiss_b1", "g:")):
            curve = curves.get(name, [])
            ax.plot([p["recall"] for p in curve], [p["qps"] for p in curve], style, label=name, markersize=3)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries/s")
        ax.set_title(f"{dataset} {index_type}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(report: dict[str, Any]) -> str:
    lines = ["dataset              index  recall  faiss(b64)  arrwdb(b64)  server(64c)  faiss(b1)"]
    fmt = lambda v: f"{v:11.0f}" if v else "          -"  # noqa: E731
    for row in report["table"]:
        lines.append(
            f"{row['dataset']:<20} {row['index']:<6} {row['recall']:>6} {fmt(row['faiss'])} {fmt(row['arrwdb'])}  "
            f"{fmt(row['server'])} {fmt(row['faiss_b1'])}"
        )
    if report.get("target"):
        t = report["target"]
        lines.append(
            f"\ntarget: {t['dataset']} hnsw ef_search={t['ef_search']}: server {t['server_qps']:.0f} qps vs raw FAISS "
            f"{t['faiss_qps']:.0f} qps (batch {report['settings']['batch']}) = {t['ratio']:.2f}"
        )
    return "\n".join(lines)
