"""HNSW links made on a bfloat16 copy of the rows (arrwdb.index.graph_insert), on real FAISS: the graph
keeps exactly the float32 rows and ids it was given, grows across calls as one graph, and serves
float32 searches at the recall of a graph built on float32 rows, on both metrics."""

from __future__ import annotations

import faiss
import numpy as np

from arrwdb.index import faiss_ops
from arrwdb.index.graph_insert import add_to_graph, float32_rows
from arrwdb.runtime.tuning import ADD_CHUNK


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d)).astype(np.float32)
    x = centres[rng.integers(0, 32, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _graph(d: int) -> faiss.IndexIDMap2:
    graph = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 64
    index = faiss.IndexIDMap2(graph)
    index.own_fields = True
    graph.this.disown()
    return index


def _recall(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, ef: int) -> float:
    params = faiss.SearchParametersHNSW(efSearch=ef)
    found = index.search(queries, 10, params=params)[1]
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def test_rows_and_ids_are_the_float32_ones_given_across_two_calls() -> None:
    x = _clustered(3000, 48, 0)
    ids = np.arange(100, 100 + len(x), dtype=np.int64)
    index = _graph(48)
    paced: list[int] = []
    add_to_graph(index, x[:1000], ids[:1000], lambda: paced.append(1))
    add_to_graph(index, x[1000:], ids[1000:], lambda: paced.append(1))
    graph = faiss.downcast_index(index.index)
    assert index.ntotal == graph.ntotal == len(x)
    assert np.array_equal(float32_rows(faiss.downcast_index(graph.storage)), x)  # exact, not rounded
    assert np.array_equal(faiss.vector_to_array(index.id_map), ids)
    assert np.array_equal(index.reconstruct(int(ids[2500])), x[2500])  # the reverse map is rebuilt
    assert len(paced) >= 2
    # Every row is reachable as its own nearest neighbour, through the links of both calls.
    found = index.search(x[::97], 1, params=faiss.SearchParametersHNSW(efSearch=64))[1][:, 0]
    assert np.array_equal(found, ids[::97])


def test_float32_searches_reach_the_recall_of_a_float32_built_graph() -> None:
    x = _clustered(6000, 64, 1)
    queries = _clustered(500, 64, 2)
    exact = faiss.IndexFlatIP(64)
    exact.add(x)
    truth = exact.search(queries, 10)[1]
    plain = faiss.IndexHNSWFlat(64, 16, faiss.METRIC_INNER_PRODUCT)
    plain.hnsw.efConstruction = 64
    for start in range(0, len(x), ADD_CHUNK):  # the same insertion order and chunks as add_to_graph's
        plain.add(x[start : start + ADD_CHUNK])
    linked = _graph(64)
    add_to_graph(linked, x, np.arange(len(x), dtype=np.int64), None)
    # Over an efSearch ladder (one point is noisy: near-equal distances are ordered differently)
    ladder = (16, 32, 64, 128)
    linked_recall = np.mean([_recall(linked, queries, truth, ef) for ef in ladder])
    plain_recall = np.mean([_recall(plain, queries, truth, ef) for ef in ladder])
    assert linked_recall >= plain_recall - 0.02, (linked_recall, plain_recall)


def test_builds_and_extensions_of_the_server_use_it_and_stay_shareable() -> None:
    x = _clustered(5000, 32, 3)
    ids = np.arange(len(x), dtype=np.int64)
    built = faiss_ops.build("hnsw", {"m": 16, "ef_construction": 64}, "cosine", ids[:3000], x[:3000])
    grown = faiss_ops.extend(built, ids[3000:], x[3000:])
    shared = faiss_ops.shared_storage(grown)
    assert shared is not None
    assert np.array_equal(shared[0], ids) and np.array_equal(shared[1], x)
    assert faiss_ops.shared_storage(built)[1].shape == (3000, 32)  # the published one is untouched


def _links(metric: int, bfloat16_links: bool | None) -> np.ndarray:
    x = _clustered(2000, 32, 4)
    graph = faiss.IndexHNSWFlat(32, 16, metric)
    graph.hnsw.efConstruction = 40
    index = faiss.IndexIDMap2(graph)
    add_to_graph(index, x, np.arange(len(x), dtype=np.int64), None, bfloat16_links)
    return faiss.vector_to_array(graph.hnsw.neighbors)


def test_every_graph_takes_bfloat16_links_by_default() -> None:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one thread: insertion is deterministic, so the links can be compared
    try:
        for metric in (faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT):
            assert np.array_equal(_links(metric, None), _links(metric, True))
            assert not np.array_equal(_links(metric, None), _links(metric, False))
    finally:
        faiss.omp_set_num_threads(threads)


def test_an_l2_graph_far_from_the_origin_keeps_the_recall_of_float32_links() -> None:
    """Rows with a large common offset: bfloat16 (about three significant digits) would round them to
    a few values; the copy is of the rows minus their mean, which L2 distances do not notice."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((32, 48)).astype(np.float32) * 4
    x = (centres[rng.integers(0, 32, 6000)] + rng.standard_normal((6000, 48))).astype(np.float32) + 100_000
    queries = (centres[rng.integers(0, 32, 300)] + rng.standard_normal((300, 48))).astype(np.float32) + 100_000
    exact = faiss.IndexFlatL2(48)
    exact.add(x)
    truth = exact.search(queries, 10)[1]
    recalls = []
    for bfloat16_links in (False, True):
        graph = faiss.IndexHNSWFlat(48, 16, faiss.METRIC_L2)
        graph.hnsw.efConstruction = 64
        index = faiss.IndexIDMap2(graph)
        add_to_graph(index, x[:4000], np.arange(4000, dtype=np.int64), None, bfloat16_links)
        add_to_graph(index, x[4000:], np.arange(4000, 6000, dtype=np.int64), None, bfloat16_links)  # an extension
        assert np.array_equal(float32_rows(faiss.downcast_index(graph.storage)), x)
        recalls.append(np.mean([_recall(index, queries, truth, ef) for ef in (16, 32, 64)]))
    assert recalls[1] >= recalls[0] - 0.02, recalls
