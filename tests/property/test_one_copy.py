"""A built HNSW library holds one copy of each vector: its exact side reads the graph's rows in place
(arrwdb.index.split_exact), with brute force as the oracle for everything the exact side answers."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from arrwdb.index import faiss_memory, faiss_snapshots
from arrwdb.index.ann import AnnIndex
from tests.property.test_ann import DIM, build_now, clustered, oracle, record

RAW_ROW_BYTES = DIM * 4


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(9000, seed=21)


def check_exact_side(index: AnnIndex, data: np.ndarray, live: np.ndarray, metric: str, seed: int) -> None:
    """Unfiltered, filtered (few and many rows) and re-scored answers equal brute force over ``live``."""
    truth_index = oracle(data[live - 1], live, metric)
    queries = clustered(20, seed=seed)
    rng = np.random.default_rng(seed)
    for allowed in (None, np.sort(rng.choice(live, 50, replace=False)), np.sort(rng.choice(live, 3000, replace=False))):
        scores, found = index.flat.search(queries, 10, allowed)
        truth_scores, truth = truth_index.search(queries, 10, allowed)
        assert np.array_equal(found, truth)
        assert np.allclose(scores, truth_scores, atol=1e-4)
    rescored = index.flat.rescore(queries, found)
    assert np.allclose(rescored, truth_index.rescore(queries, found), atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_exact_side_reads_the_graph_in_place(data, metric):
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    index = AnnIndex(record("hnsw", metric, m=16), torch.device("cpu"))
    index.add(ids, data)
    before = index.flat.memory_bytes()
    assert before >= len(data) * RAW_ROW_BYTES  # one copy in the exact index before a build
    build_now(index)
    stats = index.statistics()
    assert stats["shared_rows"] == len(data) == stats["ann_rows"]
    # What is left on the exact side: per-row flags, norms and ids (13 bytes), no vectors.
    assert index.flat.memory_bytes() < 0.2 * len(data) * RAW_ROW_BYTES
    # The library's memory is the graph (its rows once, its links) plus those few bytes a row.
    graph = faiss_memory.memory_bytes(index.ann)
    assert graph < stats["memory_bytes"] < graph + 0.3 * len(data) * RAW_ROW_BYTES  # ids, flags, an empty tail
    check_exact_side(index, data, ids, metric, seed=1)


def test_deletes_extends_and_rebuilds_keep_the_exact_side_exact(data):
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    index = AnnIndex(record("hnsw", "l2"), torch.device("cpu"))
    index.add(ids[:5000], data[:5000])
    build_now(index)
    first_graph = index.ann
    index.remove(ids[:300])  # tombstones in the graph's rows
    index.add(ids[5000:], data[5000:])  # fresh rows, in the tail
    live = np.concatenate([ids[300:5000], ids[5000:]])
    check_exact_side(index, data, live, "l2", seed=2)
    assert build_now(index) == "extend"
    assert index.statistics()["shared_rows"] == len(data)  # the deleted rows stay in the graph, flagged
    del first_graph
    gc.collect()  # the old graph, and the storage the old base read, are gone
    check_exact_side(index, data, live, "l2", seed=3)
    index.remove(ids[300:2500])
    assert build_now(index) == "build"  # past 20% tombstones
    live = ids[2500:]
    assert index.statistics()["shared_rows"] == len(live)
    check_exact_side(index, data, live, "l2", seed=4)
    rows, alive, vectors = index.flat.rows_as_they_are()  # what a vector snapshot saves
    kept = rows if alive is None else rows[alive]
    assert np.array_equal(kept, live) and np.allclose(
        vectors[: len(kept)] if alive is None else vectors[alive], data[live - 1]
    )


def test_rows_deleted_during_a_build_stay_deleted(data):
    ids = np.arange(1, 4001, dtype=np.int64)
    index = AnnIndex(record("hnsw", "cosine"), torch.device("cpu"))
    index.add(ids, data[:4000])
    job = index.begin(index.plan())
    index.remove(ids[:10])  # after the copy: the new graph holds them
    index.add(np.arange(4001, 4101, dtype=np.int64), data[4000:4100])  # arrive during the build
    from arrwdb.index import calibrated_build

    ann, calibration = calibrated_build.build(index, job, lambda fn: fn())
    index.finish(job, ann, 0.0, calibration)
    live = np.arange(11, 4101, dtype=np.int64)
    assert len(index.flat) == len(live) and index.flat.tail.upto == 4100
    _, found = index.search(data[:10], 5)
    assert not set(found.reshape(-1).tolist()) & set(range(1, 11))
    check_exact_side(index, data, live, "cosine", seed=5)


def test_a_snapshot_install_reads_the_loaded_graph_in_place(tmp_path, data):
    ids = np.arange(1, 5001, dtype=np.int64)
    index = AnnIndex(record("hnsw", "cosine"), torch.device("cpu"))
    index.add(ids, data[:5000])
    build_now(index)
    path = tmp_path / "lib.ann"
    faiss_snapshots.save(index.ann, index.ann_rows, {"index_type": "hnsw"}, path)
    loaded, rows, _ = faiss_snapshots.load(path, {"index_type": "hnsw"})
    again = AnnIndex(record("hnsw", "cosine"), torch.device("cpu"))
    again.add(ids, data[:5000])
    again.remove(np.asarray([17], dtype=np.int64))
    again.add(np.arange(6000, 6050, dtype=np.int64), data[5000:5050])  # written after the snapshot
    again.install(loaded, rows, 5000)
    assert again.statistics()["shared_rows"] == 5000 and again.flat.tail.upto == 6049
    live = np.concatenate([ids[ids != 17], np.arange(6000, 6050)])
    vectors = np.concatenate([data[:5000], np.zeros((999, DIM), np.float32), data[5000:5050]])
    check_exact_side(again, vectors, live, "cosine", seed=6)


def test_inner_product_graphs_keep_their_own_copy(data):
    """A MIPS graph stores augmented rows [x, sqrt(M^2 - |x|^2)]: nothing to read in place."""
    ids = np.arange(1, 4001, dtype=np.int64)
    index = AnnIndex(record("hnsw", "ip"), torch.device("cpu"))
    index.add(ids, data[:4000])
    build_now(index)
    assert index.statistics()["shared_rows"] == 0
    check_exact_side(index, data, ids, "ip", seed=7)
