"""When an exact library asks the builder for a vector snapshot: once it holds enough rows that
reading them from SQLite at a restart is slow, and again when the rows not in the snapshot reach half of
those in it.  ANN libraries never ask (their builds write it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import arrwdb.library.library as library_module
from arrwdb.library.library import LibraryState
from arrwdb.records import AppliedWrite, LibraryRecord

DIM = 4


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_module, "VECTOR_SNAPSHOT_MIN_ROWS", 10)


def state_of(index_type: str = "brute_force") -> LibraryState:
    return LibraryState(LibraryRecord("lib", "t", "lib", DIM, index_type, "l2", {}, "now"), torch.device("cpu"))


def inserts(first_row: int, count: int) -> list[AppliedWrite]:
    rows = range(first_row, first_row + count)
    return [AppliedWrite("lib", f"d{row}", (), (row,), np.full((1, DIM), row, np.float32), {}, seq=row) for row in rows]


def test_asks_once_past_the_threshold_and_again_after_half_as_many_new_rows() -> None:
    state, asked = state_of(), []
    state.set_vector_snapshot_requester(lambda: asked.append(len(state.index)))
    state.apply(inserts(1, 9))
    assert asked == []  # 9 rows: below the threshold
    state.apply(inserts(10, 1))
    assert asked == [10]
    state.apply(inserts(11, 30))
    assert asked == [10]  # one request until the builder says it saved
    state.vector_snapshot_saved(40)
    state.apply(inserts(41, 19))
    assert asked == [10]  # 19 rows not in the snapshot: fewer than half of its 40
    state.apply(inserts(60, 1))
    assert asked == [10, 60]


def test_upserts_count_as_new_rows() -> None:
    """Replacing documents keeps the row count but gives their rows new ids: the snapshot no longer
    holds them, so replacing half of a library asks for a new one."""
    state, asked = state_of(), []
    state.set_vector_snapshot_requester(lambda: asked.append(len(state.index)))
    state.apply(inserts(1, 40))
    state.vector_snapshot_saved(40)
    replaced = [
        AppliedWrite("lib", f"d{old}", (old,), (old + 100,), np.ones((1, DIM), np.float32), {}, seq=old + 100)
        for old in range(1, 21)
    ]
    state.apply(replaced[:19])
    assert asked == [40] and len(state.index) == 40
    state.apply(replaced[19:])
    assert asked == [40, 40]


def test_a_library_loaded_from_sqlite_asks_when_the_requester_is_attached() -> None:
    state, asked = state_of(), []
    state.load(np.arange(1, 31, dtype=np.int64), np.ones((30, DIM), np.float32))  # no snapshot was read
    state.set_vector_snapshot_requester(lambda: asked.append(True))
    assert asked == [True]


def test_a_library_loaded_from_its_snapshot_does_not_ask_again() -> None:
    state, asked = state_of(), []
    state.load(np.arange(1, 31, dtype=np.int64), np.ones((30, DIM), np.float32))
    state.snapshot_rows = 30  # what start-up sets after reading the snapshot
    state.set_vector_snapshot_requester(lambda: asked.append(True))
    state.apply(inserts(31, 14))
    assert asked == []


def test_ann_libraries_ask_too() -> None:
    """Their builds write a snapshot, but extensions do not: a library extended from 100k rows to 1M
    would otherwise read 900k rows from SQLite at each restart."""
    state, asked = state_of("hnsw"), []
    state.set_vector_snapshot_requester(lambda: asked.append(len(state.index)))
    state.apply(inserts(1, 50))
    assert asked == [50]


def test_a_request_that_a_build_answered_meanwhile_writes_nothing(tmp_path) -> None:
    from arrwdb.engine.index_builder import IndexBuilder
    from arrwdb.index import snapshot
    from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker

    worker = DeviceWorker()
    worker.start()
    state = state_of()
    builder = IndexBuilder(worker, {"lib": state}, tmp_path)
    try:
        call_on_worker(worker, lambda: state.set_vector_snapshot_requester(lambda: None))  # asks nobody
        call_on_worker(worker, lambda: state.apply(inserts(1, 12)))
        call_on_worker(worker, lambda: state.vector_snapshot_saved(12))  # as a build that saved them would
        builder.request_vectors("lib")
        assert builder.wait_idle(timeout=30)
        assert not snapshot.exists(builder.vectors_path("lib"))
        call_on_worker(worker, lambda: state.apply(inserts(13, 5)))
        assert call_on_worker(worker, state.vector_snapshot_due) is False  # 5 new rows: under the threshold
    finally:
        builder.stop()
        worker.stop()


def test_the_builder_writes_an_exact_librarys_snapshot_even_without_faiss(tmp_path, monkeypatch) -> None:
    """Without FAISS no ANN index is built, but exact libraries still get their vector snapshots: the
    builder thread must not stop at start when FAISS is missing."""
    import sys

    from arrwdb.engine.index_builder import IndexBuilder
    from arrwdb.index import snapshot
    from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker

    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    worker = DeviceWorker()
    worker.start()
    state = state_of()
    builder = IndexBuilder(worker, {"lib": state}, tmp_path)
    try:
        call_on_worker(worker, lambda: state.set_vector_snapshot_requester(lambda: builder.request_vectors("lib")))
        call_on_worker(worker, lambda: state.apply(inserts(1, 12)))
        builder.request_build("lib")  # an ANN task without FAISS: ignored, not left pending
        assert builder.wait_idle(timeout=30)
        rows, saved = snapshot.load_vectors(builder.vectors_path("lib"), {"count": 12}, DIM)
        assert rows.tolist() == list(range(1, 13)) and saved[11, 0] == 12.0
        assert state.snapshot_rows == 12
    finally:
        builder.stop()
        worker.stop()
