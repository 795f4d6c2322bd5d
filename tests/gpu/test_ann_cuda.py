"""Every index type and metric on CUDA against the CPU reference: ivf and hnsw libraries built as the
builder builds them, served from the GPU where the installed FAISS can (FAISS GPU IVF, cuVS CAGRA),
else by FAISS on the CPU beside the GPU's exact segment; statistics must say which."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.index import faiss_ops, faiss_search
from arrwdb.index.ann import AnnIndex
from arrwdb.library.library import build_index, faiss_available
from arrwdb.records import LibraryRecord
from tests.gpu.conftest import l2_tolerance, same_up_to_ties

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
DIM = 96


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, DIM)).astype(np.float32) * 4
    return (centres[rng.integers(0, 64, n)] + rng.normal(size=(n, DIM))).astype(np.float32)


def _library(index_type: str, metric: str, device: torch.device, data: np.ndarray) -> object:
    record = LibraryRecord("lib", "t", "lib", DIM, index_type, metric, {}, "now")
    index = build_index(record, device)
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    index.add(ids[:-500], data[:-500])
    if isinstance(index, AnnIndex):  # what the builder thread does, inline
        job = index.begin(index.plan() or "build")
        ann = faiss_ops.build(index.index_type, index.params, index.metric, job.rows, job.vectors)
        index.finish(job, ann, 0.0)
    index.add(ids[-500:], data[-500:])  # fresh rows: searched exactly beside the ANN index
    return index


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(1, int((truth >= 0).sum()))


@pytest.mark.parametrize("index_type", ["brute_force", "ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_index_type_on_cuda(index_type: str, metric: str) -> None:
    data, queries = _clustered(12_000, seed=1), _clustered(200, seed=2)
    gpu, cpu = _library(index_type, metric, CUDA, data), _library(index_type, metric, CPU, data)
    exact = _library("brute_force", metric, CPU, data)
    stats = gpu.statistics()
    assert stats["device"] == "cuda" and stats["gpu_memory_bytes"] > 0
    params = {"ef_search": 800} if (index_type, metric) == ("hnsw", "ip") else {}
    found = gpu.search(queries, 10, None, params)
    truth = exact.search(queries, 10)
    tolerance = l2_tolerance(data, queries) if metric == "l2" else 1e-4
    if index_type == "brute_force" or not faiss_available():
        same_up_to_ties(found, truth, atol=tolerance, tie_atol=tolerance)
        return
    support = faiss_search.gpu_support()
    on_gpu = support.gpus > 0 and (index_type == "ivf" or support.cuvs)
    assert stats["backend"] == (
        {"ivf": "faiss-gpu-ivf", "hnsw": "cagra"}[index_type] if on_gpu else f"faiss-cpu-{index_type}"
    )
    if not on_gpu:
        assert stats["backend_note"]  # says why the GPU does not serve it
        # The same FAISS index (built from the fp32 copy) and an fp32-exact fresh segment: same results.
        same_up_to_ties(found, cpu.search(queries, 10, None, params), atol=tolerance, tie_atol=tolerance)
    assert _recall(found[1], truth[1]) >= 0.9
    allowed = np.arange(1, len(data) + 1, 2, dtype=np.int64)
    filtered = gpu.search(queries, 10, allowed, params)
    assert np.isin(filtered[1][filtered[1] >= 0], allowed).all()
    assert _recall(filtered[1], exact.search(queries, 10, allowed)[1]) >= 0.85
