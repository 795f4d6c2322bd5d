"""Vector snapshots: read straight into a writable buffer, checked as they arrive, and adopted by the
exact index without a copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.index import snapshot
from arrwdb.index.flat import FlatIndex
from arrwdb.kernels import normalize_rows

DIM = 16
META = {"index_type": "hnsw", "dimension": DIM}


def unit_rows(count: int, seed: int) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return normalize_rows(torch.from_numpy(data)).numpy()


def test_vectors_round_trip_into_a_writable_buffer_with_spare_rows(tmp_path):
    base = tmp_path / "lib.vectors"
    rows = np.arange(10, 310, 3, dtype=np.int64)
    vectors = unit_rows(len(rows), seed=1)
    snapshot.save_vectors(base, rows, vectors, META)
    loaded_rows, buffer = snapshot.load_vectors(base, META, DIM, spare_fraction=0.125)
    assert np.array_equal(loaded_rows, rows)
    assert buffer.shape == (len(rows) + 13, DIM)  # 100 rows and an eighth more, rounded up
    assert buffer.flags.writeable and buffer.flags.c_contiguous
    assert np.array_equal(buffer[: len(rows)], vectors)
    assert snapshot.verify(base, META)["count"] == len(rows)


@pytest.mark.parametrize("damage", ["truncate", "flip", "grow"])
def test_damaged_vector_files_are_refused(tmp_path, damage):
    base = tmp_path / "lib.vectors"
    rows = np.arange(1, 201, dtype=np.int64)
    snapshot.save_vectors(base, rows, unit_rows(len(rows), seed=2), META)
    data_file = snapshot.part(base, ".f32")
    blob = bytearray(data_file.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[len(blob) - 5] ^= 0x10
    else:
        blob += b"\0" * 8
    data_file.write_bytes(bytes(blob))
    with pytest.raises(snapshot.SnapshotError):
        snapshot.load_vectors(base, META, DIM)
    with pytest.raises(snapshot.SnapshotError):
        snapshot.verify(base, META)


def test_a_snapshot_made_for_other_settings_is_refused(tmp_path):
    base = tmp_path / "lib.vectors"
    snapshot.save_vectors(base, np.arange(1, 4, dtype=np.int64), unit_rows(3, seed=3), META)
    with pytest.raises(snapshot.SnapshotError, match="dimension"):
        snapshot.load_vectors(base, {**META, "dimension": DIM + 1}, DIM + 1)
    with pytest.raises(snapshot.SnapshotError):
        snapshot.verify(base, {"index_type": "ivf"})
    rows, _ = snapshot.load_vectors(base, META, DIM)
    assert rows.tolist() == [1, 2, 3]


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_adopted_rows_search_exactly_like_added_rows(metric):
    rows = np.arange(5, 2005, dtype=np.int64)
    raw = np.random.default_rng(4).standard_normal((len(rows), DIM)).astype(np.float32)
    added = FlatIndex(DIM, metric, torch.device("cpu"))
    added.add(rows, raw)
    _, stored = added.copy_rows()  # as the index stores them (normalised for cosine): what a snapshot holds
    buffer = np.zeros((len(rows) + 100, DIM), dtype=np.float32)
    buffer[: len(rows)] = stored
    adopted = FlatIndex(DIM, metric, torch.device("cpu"))
    assert adopted.adopt(rows, buffer)
    assert len(adopted) == len(rows)
    queries = np.random.default_rng(5).standard_normal((20, DIM)).astype(np.float32)
    nearest = queries[:1] * (1 if metric == "l2" else 3)  # the best hit of query 0 in every metric
    for index in (added, adopted):  # the adopted index keeps working: writes land in the spare rows
        index.add(np.asarray([5000], dtype=np.int64), nearest)
        index.remove(np.asarray([7, 11], dtype=np.int64))
    want_scores, want_ids = added.search(queries, 10)
    got_scores, got_ids = adopted.search(queries, 10)
    assert np.array_equal(got_ids, want_ids)
    assert np.allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    assert 7 not in got_ids and got_ids[0, 0] == 5000


def test_adopt_refuses_what_it_cannot_take_without_a_copy():
    rows = np.arange(1, 11, dtype=np.int64)
    buffer = unit_rows(10, seed=6)
    full = FlatIndex(DIM, "cosine", torch.device("cpu"))
    full.add(rows, buffer)
    assert not full.adopt(rows + 100, buffer.copy())  # not empty
    read_only = buffer.copy()
    read_only.flags.writeable = False
    assert not FlatIndex(DIM, "cosine", torch.device("cpu")).adopt(rows, read_only)
    assert not FlatIndex(DIM, "cosine", torch.device("cpu")).adopt(rows[::-1].copy(), buffer.copy())  # unsorted
    assert not FlatIndex(DIM, "cosine", torch.device("cpu")).adopt(rows, buffer[:5].copy())  # too small


def test_live_vectors_are_written_chunk_by_chunk_from_the_rows_as_they_are(tmp_path, monkeypatch):
    """A vector snapshot taken from the index without copying its matrix holds exactly the rows live
    when it was taken, even though the index keeps changing while the file is written: adds beyond the
    taken size, removes, growth and compaction never touch the rows it reads."""
    import arrwdb.index.flat_rows as flat_rows_module

    monkeypatch.setattr(snapshot, "_CHUNK", 7 * DIM * 4)  # 7 rows a chunk: many chunks, some all live
    monkeypatch.setattr(flat_rows_module, "_COMPACT_MIN_TOMBSTONES", 100)
    index = FlatIndex(DIM, "cosine", torch.device("cpu"))
    index.add(np.arange(1, 1001, dtype=np.int64), unit_rows(1000, seed=7))
    index.remove(np.arange(1, 1001, 3, dtype=np.int64))
    ids, alive, matrix = index.rows_as_they_are()
    assert np.shares_memory(matrix, index._matrix.numpy())  # no copy of the rows
    want_rows, want = index.copy_rows()
    # The worker goes on while the snapshot is written: more removes (enough to compact), then adds
    # that grow the matrix.
    taken = index._matrix
    index.remove(np.arange(2, 1001, 3, dtype=np.int64))
    assert index._matrix is not taken and len(index) == 333  # compacted into new buffers
    index.add(np.arange(2000, 4000, dtype=np.int64), unit_rows(2000, seed=8))
    base = tmp_path / "lib.vectors"
    assert snapshot.save_vectors(base, ids, matrix, META, alive) == len(want_rows) == 666
    rows, buffer = snapshot.load_vectors(base, {**META, "count": 666}, DIM)
    assert np.array_equal(rows, want_rows)
    assert np.array_equal(buffer[:666], want)


def test_rows_off_the_host_or_in_half_precision_come_copied_and_live_only() -> None:
    half = FlatIndex(DIM, "l2", torch.device("cpu"), dtype=torch.float16)
    half.add(np.arange(1, 21, dtype=np.int64), unit_rows(20, seed=9))
    half.remove(np.asarray([4], dtype=np.int64))
    ids, alive, rows = half.rows_as_they_are()
    assert alive is None and len(ids) == len(rows) == 19 and 4 not in ids
    assert rows.dtype == np.float32 and np.array_equal(rows, half.copy_rows()[1])
