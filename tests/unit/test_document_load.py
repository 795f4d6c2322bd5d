"""The filter state loads in the background after a restart: writes applied meanwhile are never lost,
whether or not the background read already saw them."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from arrwdb.engine.startup import DocumentLoader
from arrwdb.errors import DeadlineExceeded, NotReady
from arrwdb.library.filters import parse_filter
from arrwdb.library.library import DocumentTables, LibraryState, RowEntry, row_entries_of
from arrwdb.records import AppliedWrite, LibraryRecord

DIM = 4


def library() -> LibraryState:
    state = LibraryState(LibraryRecord("lib", "t", "lib", DIM, "brute_force", "l2", {}, "now"), torch.device("cpu"))
    state.load(np.arange(1, 4, dtype=np.int64), np.eye(3, DIM, dtype=np.float32))
    return state


def upsert(doc_id: str, row: int, group: int, removed: tuple[int, ...] = ()) -> AppliedWrite:
    vector = np.full((1, DIM), row, dtype=np.float32)
    return AppliedWrite("lib", doc_id, removed, (row,), vector, {"g": group}, seq=row)


def test_writes_applied_while_loading_are_replayed_over_what_the_read_found():
    state = library()
    state.begin_document_load(lambda: 3)
    assert not state.documents_loaded and state.statistics()["documents_loaded"] is False
    assert state.document_count == 3  # from the store until the state is installed
    # Applied while the read runs: a new document, a replaced one and a deleted one.
    state.apply([upsert("d4", 4, group=1)])
    state.apply([upsert("d2", 5, group=1, removed=(2,)), AppliedWrite("lib", "d3", (3,), (), None, None, seq=6)])
    # The read saw the store before all three writes, except the new document.
    read_meta = {"d1": {"g": 0}, "d2": {"g": 0}, "d3": {"g": 1}, "d4": {"g": 1}}
    read_rows = {"d1": (1,), "d2": (2,), "d3": (3,), "d4": (4,)}
    version = state.version
    read_entries = row_entries_of(read_meta, read_rows, {"d1": "One"})
    state.finish_document_load(DocumentTables(read_meta, read_rows, read_entries, set()))
    assert state.documents_loaded and state.statistics()["documents_loaded"] is True
    assert state.version > version  # no filter result computed before it can be served from the cache
    assert state.doc_meta == {"d1": {"g": 0}, "d2": {"g": 1}, "d4": {"g": 1}}
    assert state.doc_rows == {"d1": (1,), "d2": (5,), "d4": (4,)}
    assert state.document_count == 3
    # What hits are made of follows the replayed writes too: no entry for a replaced or deleted row.
    assert state.row_entries == {
        1: RowEntry("d1", 0, "One", {"g": 0}),
        4: RowEntry("d4", 0, None, {"g": 1}),
        5: RowEntry("d2", 0, None, {"g": 1}),
    }
    group_one = parse_filter({"g": 1})
    assert group_one is not None
    assert state.allowed_rows(group_one, "g1").tolist() == [4, 5]


def test_a_library_that_never_loaded_in_the_background_counts_its_own_documents():
    state = library()
    assert state.documents_loaded
    state.apply([upsert("d9", 9, group=2)])
    assert state.document_count == 1


def test_a_filtered_search_waits_for_the_loader_within_its_deadline():
    async def scenario() -> None:
        loader = DocumentLoader(store=None, worker=None, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
        loader._done["a"] = asyncio.get_running_loop().create_future()
        loader._done["b"] = asyncio.get_running_loop().create_future()
        with pytest.raises(DeadlineExceeded):
            await loader.wait("a", time.monotonic() + 0.05)
        assert not loader._done["a"].done()  # one caller's timeout leaves it pending for the others
        later = asyncio.create_task(loader.wait("a", time.monotonic() + 5))
        loader._settle("a", None)
        await later
        loader._settle("b", RuntimeError("disk gone"))
        with pytest.raises(NotReady):
            await loader.wait("b", time.monotonic() + 5)
        await loader.wait("never-loading", time.monotonic() + 5)  # libraries created after start

    asyncio.run(scenario())


def test_a_group_of_writes_leaves_what_applying_them_one_by_one_leaves():
    group = [
        upsert("d4", 4, group=1),
        upsert("d4", 5, group=2, removed=(4,)),  # replaces a row the same group added
        upsert("d1", 6, group=3, removed=(1,)),
        AppliedWrite("lib", "d2", (2,), (), None, None, seq=7),
        upsert("d7", 8, group=1),
    ]
    together, one_by_one = library(), library()
    for state in (together, one_by_one):
        state.doc_meta = {"d1": {"g": 0}, "d2": {"g": 0}, "d3": {"g": 0}}
        state.doc_rows = {"d1": (1,), "d2": (2,), "d3": (3,)}
    together.apply(group)
    for write in group:
        one_by_one.apply([write])
    assert together.doc_meta == one_by_one.doc_meta and together.doc_rows == one_by_one.doc_rows
    assert together.index.live_rows().tolist() == one_by_one.index.live_rows().tolist() == [3, 5, 6, 8]
    queries = np.random.default_rng(0).standard_normal((5, DIM)).astype(np.float32)
    assert np.array_equal(together.index.search(queries, 3)[1], one_by_one.index.search(queries, 3)[1])
