"""An exact (brute_force) library's vectors are kept in a snapshot beside the store once it is large:
a restart reads that file plus the rows written since from SQLite, and answers as before."""

from __future__ import annotations

import numpy as np
import pytest

import arrwdb.library.library as library_module
from arrwdb.index import snapshot

DIM = 16


def add(client, vectors: np.ndarray, first: int, count: int) -> None:
    docs = [{"id": f"d{i}", "embedding": vectors[i].tolist()} for i in range(first, first + count)]
    client.add_documents("exact", docs)


def top(client, vector: np.ndarray) -> list[str]:
    return [h["document_id"] for h in client.search("exact", embedding=vector.tolist(), k=5)]


def test_a_large_exact_library_restarts_from_its_vector_snapshot(start_server, tmp_path, monkeypatch):
    monkeypatch.setattr(library_module, "VECTOR_SNAPSHOT_MIN_ROWS", 1000)
    vectors = np.random.default_rng(8).standard_normal((1400, DIM)).astype(np.float32)
    data_dir = tmp_path / "store"
    server = start_server(data_dir)
    with server.client() as c:
        lib = c.create_library("exact", dimension=DIM, index_type="brute_force", metric="cosine")
        add(c, vectors, 0, 900)
        assert server.engine.builder.wait_idle(timeout=60)
        base = data_dir / "indexes" / f"{lib['id']}.vectors"
        assert not snapshot.exists(base)  # 900 rows: read from SQLite at a restart
        add(c, vectors, 900, 300)
        assert server.engine.builder.wait_idle(timeout=60)
        assert snapshot.exists(base)
        add(c, vectors, 1200, 200)  # after the snapshot: replayed from the store
        c.delete_document("exact", "d3")  # in the snapshot, deleted since
        queries = vectors[[3, 10, 1250, 1399]] + 0.01
        before = [top(c, q) for q in queries]
    server.stop()

    again = start_server(data_dir)
    state = again.engine.libraries[lib["id"]]
    assert state.snapshot_rows == 1199  # its rows came from the snapshot: 1,200 less the one deleted since
    with again.client() as c:
        stats = c.statistics("exact")
        assert stats["vector_count"] == 1399 and stats["index"]["vector_snapshot_rows"] == 1199
        after = [top(c, q) for q in queries]
    assert after == before
    assert all("d3" not in hits for hits in after)
    assert after[2][0] == "d1250" and after[3][0] == "d1399"


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_a_damaged_or_missing_snapshot_is_read_from_the_store_and_written_again(
    start_server, tmp_path, monkeypatch, damage
):
    monkeypatch.setattr(library_module, "VECTOR_SNAPSHOT_MIN_ROWS", 1000)
    vectors = np.random.default_rng(9).standard_normal((1100, DIM)).astype(np.float32)
    data_dir = tmp_path / "store"
    server = start_server(data_dir)
    with server.client() as c:
        lib = c.create_library("exact", dimension=DIM, index_type="brute_force")
        add(c, vectors, 0, 600)
        add(c, vectors, 600, 500)
        assert server.engine.builder.wait_idle(timeout=60)
    server.stop()
    base = data_dir / "indexes" / f"{lib['id']}.vectors"
    if damage == "remove":
        snapshot.remove(base)
    else:
        part = snapshot.part(base, ".f32")
        part.write_bytes(part.read_bytes()[:999])

    expected = {"library_id": lib["id"], "count": 1100}
    with pytest.raises((snapshot.SnapshotError, OSError)):
        snapshot.load_vectors(base, expected, DIM)

    again = start_server(data_dir)
    assert again.engine.builder.wait_idle(timeout=60)
    rows, _ = snapshot.load_vectors(base, expected, DIM)  # whole again: its CRCs are checked
    assert len(rows) == 1100
    assert again.engine.libraries[lib["id"]].snapshot_rows == 1100
    with again.client() as c:
        assert top(c, vectors[7])[0] == "d7"
