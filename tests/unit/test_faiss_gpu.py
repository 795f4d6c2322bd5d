"""Serving ANN indexes from a GPU, checked on the CPU: the installed (CPU) FAISS is dressed up as a GPU
build whose "GPU" indexes are CPU ones (an IVF clone, an exact stand-in for CAGRA), which exercises
everything arrwdb does around FAISS GPU: choosing the backend, id mapping, score conversion, dropping
excluded ids, falling back to the CPU index, and what statistics say."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from arrwdb.index import faiss_gpu, faiss_ops, faiss_search
from arrwdb.index.flat import FlatIndex

CUDA = torch.device("cuda")
DIM = 24


class _Resources:
    def setTempMemory(self, nbytes: int) -> None:
        self.temp = nbytes


class _ClonerOptions:
    useFloat16 = True


class _CagraConfig:
    graph_degree = 64
    intermediate_graph_degree = 128
    device = 0


class _CagraParams:
    itopk_size = 64


class _Cagra:
    """Exact L2 over the vectors it was trained on, answering positions like GpuIndexCagra."""

    def __init__(self, resources: Any, dimension: int, metric: int, config: Any) -> None:
        import faiss

        assert metric == faiss.METRIC_L2
        self.flat = faiss.IndexFlatL2(dimension)

    @property
    def ntotal(self) -> int:
        return int(self.flat.ntotal)

    def train(self, vectors: np.ndarray) -> None:
        self.flat.add(vectors)

    def search(self, queries: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self.flat.search(queries, k)


@pytest.fixture
def fake_gpu_faiss(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import faiss

    monkeypatch.setattr(faiss, "StandardGpuResources", _Resources, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "GpuClonerOptions", _ClonerOptions, raising=False)
    monkeypatch.setattr(
        faiss, "index_cpu_to_gpu", lambda res, gpu, index, options: faiss.clone_index(index), raising=False
    )
    monkeypatch.setattr(faiss, "GpuIndexCagra", _Cagra, raising=False)
    monkeypatch.setattr(faiss, "GpuIndexCagraConfig", _CagraConfig, raising=False)
    monkeypatch.setattr(faiss, "SearchParametersCagra", _CagraParams, raising=False)
    faiss_gpu.gpu_support.cache_clear()
    yield
    faiss_gpu.gpu_support.cache_clear()


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM), dtype=np.float32) * rng.uniform(0.5, 2.0, (n, 1)).astype(np.float32)
    return np.arange(100, 100 + n, dtype=np.int64), vectors, rng.standard_normal((20, DIM), dtype=np.float32)


def _exact(metric: str, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int, allowed: Any = None) -> Any:
    flat = FlatIndex(DIM, metric, torch.device("cpu"))
    flat.add(ids, vectors)
    if metric == "cosine":  # AnnIndex hands FAISS normalised queries
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return flat.search(queries, k, allowed), queries


def test_cpu_build_of_faiss_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)  # a CPU build, also on a GPU host
    faiss_gpu.gpu_support.cache_clear()
    support = faiss_search.gpu_support()
    assert support.gpus == 0 and "CPU build" in support.note
    ids, vectors, _ = _data(200)
    index = faiss_ops.build("hnsw", {}, "l2", ids, vectors)
    served = faiss_search.serve(index, "hnsw", "l2", CUDA, fits=lambda n: True)
    assert served.gpu is None and served.backend == "faiss-cpu-hnsw"
    assert "CPU build" in faiss_search.served_statistics(served)["backend_note"]
    on_cpu = faiss_search.serve(index, "hnsw", "l2", torch.device("cpu"))
    assert faiss_search.served_statistics(on_cpu) == {"backend": "faiss-cpu-hnsw", "ann_gpu_memory_bytes": 0}
    faiss_gpu.gpu_support.cache_clear()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_ivf_served_from_the_gpu_copy(fake_gpu_faiss: None, metric: str) -> None:
    ids, vectors, queries = _data()
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss_ops.build("ivf", {"nlist": 16}, metric, ids, vectors)
    served = faiss_search.serve(index, "ivf", metric, CUDA, fits=lambda n: True)
    assert served.backend == "faiss-gpu-ivf" and served.gpu is not index
    stats = faiss_search.served_statistics(served)
    assert stats["backend"] == "faiss-gpu-ivf" and stats["ann_gpu_memory_bytes"] > 0
    (exact_scores, exact_ids), unit_queries = _exact(metric, ids, vectors, queries, 10)
    kwargs: dict[str, Any] = {"ef_search": None, "nprobe": 16}  # every list: IVF is exact here
    scores, found = faiss_search.search_served(served, "ivf", metric, unit_queries, 10, selector=None, **kwargs)
    np.testing.assert_array_equal(found, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-4)

    allowed = ids[::3]
    selector = faiss_search.bitmap_selector(allowed, int(ids[-1]))
    scores, found = faiss_search.search_served(served, "ivf", metric, unit_queries, 10, selector=selector, **kwargs)
    (exact_scores, exact_ids), _ = _exact(metric, ids, vectors, queries, 10, allowed)
    assert np.isin(found[found >= 0], allowed).all()
    # What comes back is the exact best among the allowed (a short row is made exact by AnnIndex).
    for row, expected in zip(found, exact_ids, strict=True):
        np.testing.assert_array_equal(row[row >= 0], expected[: int((row >= 0).sum())])
    assert (found >= 0).all(axis=1).mean() > 0.9  # over-fetching fills nearly every row

    # k past the GPU's limit: the CPU index answers, with the same results.
    big_k = faiss_gpu.IVF_MAX_K + 1
    _, gpu_ids = faiss_search.search_served(served, "ivf", metric, unit_queries[:2], big_k, selector=None, **kwargs)
    _, cpu_ids = faiss_search.search(index, "ivf", metric, unit_queries[:2], big_k, selector=None, **kwargs)
    np.testing.assert_array_equal(gpu_ids, cpu_ids)


def test_ivf_that_does_not_fit_stays_on_cpu(fake_gpu_faiss: None) -> None:
    ids, vectors, _ = _data(1000)
    index = faiss_ops.build("ivf", {"nlist": 8}, "l2", ids, vectors)
    served = faiss_search.serve(index, "ivf", "l2", CUDA, fits=lambda n: False)
    assert served.gpu is None and served.backend == "faiss-cpu-ivf" and "does not fit" in served.note


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_hnsw_served_by_cagra(fake_gpu_faiss: None, metric: str) -> None:
    ids, vectors, queries = _data()
    if metric == "cosine":
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss_ops.build("hnsw", {}, metric, ids, vectors)  # ip: a MIPS graph of augmented rows
    served = faiss_search.serve(index, "hnsw", metric, CUDA, fits=lambda n: True)
    assert served.backend == "cagra" and served.augmented == (metric == "ip")
    (exact_scores, exact_ids), unit_queries = _exact(metric, ids, vectors, queries, 10)
    kwargs: dict[str, Any] = {"ef_search": 64, "nprobe": None}
    scores, found = faiss_search.search_served(served, "hnsw", metric, unit_queries, 10, selector=None, **kwargs)
    np.testing.assert_array_equal(found, exact_ids)  # the stand-in CAGRA is exact: ids and scores map back
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-3)
    deleted = ids[::2]
    live = np.setdiff1d(ids, deleted)
    selector = faiss_search.bitmap_selector(live, int(ids[-1]))
    _, found = faiss_search.search_served(served, "hnsw", metric, unit_queries, 10, selector=selector, **kwargs)
    assert not np.isin(found, deleted).any()


def test_hnsw_without_cuvs_is_searched_on_cpu(fake_gpu_faiss: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    monkeypatch.delattr(faiss, "GpuIndexCagra")
    faiss_gpu.gpu_support.cache_clear()
    ids, vectors, _ = _data(500)
    index = faiss_ops.build("hnsw", {}, "l2", ids, vectors)
    served = faiss_search.serve(index, "hnsw", "l2", CUDA, fits=lambda n: True)
    assert served.backend == "faiss-cpu-hnsw" and "no cuVS" in served.note


def test_gpu_errors_fall_back_to_the_cpu_index(fake_gpu_faiss: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    def broken_clone(*args: Any) -> Any:
        raise RuntimeError("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl (simulated)")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken_clone)
    ids, vectors, queries = _data(1000)
    index = faiss_ops.build("ivf", {"nlist": 8}, "ip", ids, vectors)
    served = faiss_search.serve(index, "ivf", "ip", CUDA, fits=lambda n: True)
    assert served.gpu is None and "FAISS GPU failed" in served.note
    kwargs: dict[str, Any] = {"ef_search": None, "nprobe": 8}
    scores, found = faiss_search.search_served(served, "ivf", "ip", queries, 5, selector=None, **kwargs)
    assert (found >= 0).all() and np.isfinite(scores).all()


def test_keep_allowed_drops_excluded_ids_in_order() -> None:
    bits = np.zeros(20, dtype=bool)
    bits[[2, 5, 7]] = True
    bitmap = np.packbits(bits, bitorder="little")
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0]], dtype=np.float32)
    ids = np.array([[5, 3, 7, 40, -1]])
    kept_scores, kept = faiss_gpu._keep_allowed(scores, ids, bitmap)
    np.testing.assert_array_equal(kept, [[5, 7, -1, -1, -1]])
    np.testing.assert_array_equal(kept_scores[0, :2], [9.0, 7.0])
    assert np.isneginf(kept_scores[0, 2:]).all()
    assert faiss_gpu.count_bits(bitmap) == 3


def test_a_failing_gpu_search_hands_over_to_the_cpu(fake_gpu_faiss: None) -> None:
    ids, vectors, queries = _data(1000)
    index = faiss_ops.build("ivf", {"nlist": 8}, "l2", ids, vectors)
    served = faiss_search.serve(index, "ivf", "l2", CUDA, fits=lambda n: True)

    class Broken:
        ntotal = index.ntotal

        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("an illegal memory access was encountered (simulated)")

    served.gpu = Broken()
    kwargs: dict[str, Any] = {"ef_search": None, "nprobe": 8, "selector": None}
    expected = faiss_search.search(index, "ivf", "l2", queries, 5, **kwargs)
    for _ in range(2):
        found = faiss_search.search_served(served, "ivf", "l2", queries, 5, **kwargs)
        np.testing.assert_array_equal(found[1], expected[1])
    assert served.gpu is None and served.backend == "faiss-cpu-ivf" and "GPU search failed" in served.note
