"""`arrwdb bench coldstart --build-rows N` end to end on a small store: the built data dir restarts a
real server from the saved HNSW snapshot (no rebuild), and every query of the benchmark is answered."""

from __future__ import annotations

from pathlib import Path

from arrwdb.bench.coldstart import COLD_INDEX_PARAMS, build_cold_store, run_coldstart


def test_built_store_restarts_from_its_snapshot(tmp_path: Path) -> None:
    data_dir = tmp_path / "cold"
    build_cold_store(data_dir, "cold", rows=3000, dimension=16)
    snapshot = data_dir / "indexes" / "bench-cold.ann.faiss"
    built_at = snapshot.stat().st_mtime_ns
    build_cold_store(data_dir, "cold", rows=3000, dimension=16)  # complete: left as it is
    assert snapshot.stat().st_mtime_ns == built_at
    assert (data_dir / "indexes" / "bench-cold.vectors.f32").exists()  # as a server's own build leaves it

    report = run_coldstart(data_dir, "cold", timeout=120)

    assert report["vectors"] == 3000 and report["dimension"] == 16
    index = report["index"]
    assert index["state"] == "ann" and index["ann_rows"] == 3000
    assert index["builds"] == 0  # served from the snapshot, not from a graph built at start
    assert (index["m"], index["ef_construction"]) == (COLD_INDEX_PARAMS["m"], COLD_INDEX_PARAMS["ef_construction"])
    assert report["first_exact_status"] == report["first_ann_status"] == report["first_filtered_status"] == 200
    assert 0 < report["ready_s"] <= report["first_exact_query_s"] <= report["first_ann_query_s"]


def test_built_exact_store_restarts_from_its_vector_snapshot(tmp_path: Path) -> None:
    data_dir = tmp_path / "cold"
    build_cold_store(data_dir, "cold", rows=3000, dimension=16, index_type="brute_force")
    assert (data_dir / "indexes" / "bench-cold.vectors.f32").exists()
    assert not (data_dir / "indexes" / "bench-cold.ann.faiss").exists()

    report = run_coldstart(data_dir, "cold", timeout=120)

    assert report["vectors"] == 3000 and report["index"]["type"] == "brute_force"
    assert report["first_exact_status"] == report["first_filtered_status"] == 200
    assert report["first_ann_query_s"] is None and report["first_ann_status"] is None


def test_the_saved_vectors_are_stored_as_the_server_stores_them(tmp_path: Path) -> None:
    """Cosine rows are saved normalised (the server adopts the snapshot's rows without a pass over them),
    and the snapshot says which rows it holds."""
    import numpy as np

    from arrwdb.bench.datasets import build_vector_store, save_snapshots
    from arrwdb.index import faiss_ops, snapshot

    rng = np.random.default_rng(3)
    vectors = (rng.standard_normal((300, 8)) * 5).astype(np.float32)  # not unit length
    rows = np.arange(1, 301, dtype=np.int64)
    build_vector_store(tmp_path, "v", vectors, index_type="hnsw")
    save_snapshots(
        tmp_path, "v", rows, vectors, "cosine", "hnsw", ann=faiss_ops.build("hnsw", {}, "cosine", rows, vectors)
    )
    saved_rows, saved = snapshot.load_vectors(tmp_path / "indexes" / "bench-v.vectors", {"count": 300}, 8)
    assert saved_rows.tolist() == rows.tolist()
    np.testing.assert_allclose(np.linalg.norm(saved[:300], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(saved[:300], vectors / np.linalg.norm(vectors, axis=1, keepdims=True), rtol=1e-5)
