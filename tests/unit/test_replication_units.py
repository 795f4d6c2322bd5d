"""Replication's parts without Ray: the shard role changes (pure), the catalog's durable changes, the
store's change pages (a copy built from them equals the library, caught up from any position), and a
replica's positions file."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arrwdb.cluster.catalog import Catalog
from arrwdb.cluster.replica_copy import Positions
from arrwdb.cluster.shard_state import change, copies_placement, readers, replicated, role_of, with_copies
from arrwdb.errors import Conflict, InvalidInput
from arrwdb.records import ChunkRecord, Delete, DocumentRecord, Patch, Upsert, WriteOp
from arrwdb.store.store import Store, new_library_record

DIM = 4


def _entry(shards: int = 2, replicas: int = 2) -> dict[str, Any]:
    copies = copies_placement(0, shards, replicas, ["e0", "e1", "e2"])
    return {
        "id": "a" * 32,
        "tenant": "t",
        "name": "docs",
        "shards": shards,
        "replicas": replicas,
        "placement": [c[0] for c in copies],
        "copies": copies,
        "in_sync": [list(c) for c in copies],
        "epochs": [1] * shards,
    }


# -- roles ---------------------------------------------------------------------------------------------


def test_copies_are_on_different_engines_and_primaries_spread() -> None:
    copies = copies_placement(1, 3, 2, ["e0", "e1", "e2"])
    assert copies == [["e1", "e2"], ["e2", "e0"], ["e0", "e1"]]
    assert all(len(set(c)) == 2 for c in copies)
    with pytest.raises(InvalidInput, match="at most 3"):
        copies_placement(0, 1, 4, ["e0", "e1", "e2"])


def test_an_entry_of_one_copy_per_shard_reads_as_one() -> None:
    old = {"id": "b" * 32, "tenant": "t", "name": "x", "shards": 2, "replicas": 1, "placement": ["e0", "e1"]}
    entry = with_copies(old)
    assert entry["copies"] == [["e0"], ["e1"]] and entry["in_sync"] == [["e0"], ["e1"]]
    assert entry["epochs"] == [1, 1]
    assert not replicated(entry)
    assert replicated(_entry())


def test_promote_takes_an_in_sync_replica_and_a_new_epoch() -> None:
    entry = _entry()
    promoted = change(entry, 0, "promote", 1, "e1", by="e0")
    assert promoted["placement"][0] == "e1" and promoted["epochs"][0] == 2
    assert promoted["in_sync"][0] == ["e1"]  # the former primary must catch up before it counts again
    assert role_of(promoted, 0, "e0") == "replica" and role_of(promoted, 0, "e1") == "primary"
    assert entry["placement"][0] == "e0"  # the input is not changed
    assert readers(promoted, 0) == ["e1"]


@pytest.mark.parametrize(
    ("op", "epoch", "engine", "by"),
    [
        ("promote", 2, "e1", "e0"),  # an epoch the caller did not see
        ("promote", 1, "e1", "e2"),  # not the primary the caller thinks it is
        ("promote", 1, "e2", "e0"),  # not a copy in sync
        ("drop_in_sync", 1, "e1", "e1"),  # only the primary changes the in-sync set
        ("drop_in_sync", 1, "e0", "e0"),  # the primary never leaves it
        ("add_copy", 1, "e1", None),  # already a copy
        ("remove_copy", 1, "e0", None),  # the primary cannot be removed
        ("remove_copy", 1, "e2", None),  # not a copy
    ],
)
def test_role_changes_refused_as_conflicts_change_nothing(op: str, epoch: int, engine: str, by: str | None) -> None:
    entry = _entry()
    before = repr(entry)
    with pytest.raises(Conflict):
        change(entry, 0, op, epoch, engine, by)
    assert repr(entry) == before


def test_a_replica_leaves_and_rejoins_the_in_sync_set() -> None:
    entry = change(_entry(), 1, "drop_in_sync", 1, "e2", by="e1")
    assert entry["in_sync"][1] == ["e1"] and readers(entry, 1) == ["e1"]
    entry = change(entry, 1, "add_in_sync", 1, "e2", by="e1")
    assert entry["in_sync"][1] == ["e1", "e2"] and readers(entry, 1) == ["e1", "e2"]


def test_a_copy_added_starts_out_of_sync_and_a_removed_one_is_gone() -> None:
    entry = change(_entry(), 0, "add_copy", 1, "e2")
    assert entry["copies"][0] == ["e0", "e1", "e2"] and "e2" not in entry["in_sync"][0]
    entry = change(entry, 0, "remove_copy", 1, "e1")
    assert entry["copies"][0] == ["e0", "e2"] and entry["in_sync"][0] == ["e0"]


def test_the_catalog_keeps_role_changes_durably_and_refuses_stale_ones(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    entry = _entry()
    catalog.reserve(entry)
    catalog.publish(entry)
    catalog.change_shard(entry["id"], 0, "promote", 1, "e1", "e0")
    with pytest.raises(Conflict):  # a second frontend that saw epoch 1 too
        catalog.change_shard(entry["id"], 0, "promote", 1, "e1", "e0")
    catalog.close()
    again = Catalog(tmp_path / "catalog.sqlite3")
    stored = again.get("t", "docs")
    assert stored["placement"][0] == "e1" and stored["epochs"][0] == 2
    again.close()


# -- change pages --------------------------------------------------------------------------------------


def _doc(doc_id: str, rng: random.Random) -> DocumentRecord:
    chunks = rng.randint(1, 3)
    vectors = np.random.default_rng(rng.randint(0, 1 << 30)).standard_normal((chunks, DIM)).astype(np.float32)
    text = "word " * (4 * chunks)
    records = tuple(ChunkRecord(i, 20 * i, 20 * i + 20, vectors[i]) for i in range(chunks))
    return DocumentRecord(doc_id, rng.choice([None, "title"]), text, {"n": rng.randint(0, 9)}, None, records)


def _random_ops(rng: random.Random, count: int) -> list[WriteOp]:
    ops: list[WriteOp] = []
    for _ in range(count):
        doc_id = f"d{rng.randint(0, 30)}"
        kind = rng.random()
        if kind < 0.6:
            ops.append(Upsert(_doc(doc_id, rng)))
        elif kind < 0.8:
            ops.append(Delete(doc_id, missing_ok=True))
        else:
            ops.append(Patch(doc_id, True, "patched", {"p": 1}))
    return ops


def _state(store: Store, library_id: str) -> dict[str, Any]:
    """Every document of the library with its chunks' spans and vectors."""
    page = store.changes_since(library_id, 0, DIM, max_changes=1_000_000)
    return {
        doc.id: (
            doc.title,
            doc.text,
            doc.metadata,
            [(c.chunk_index, c.start, c.end, c.vector.tolist()) for c in doc.chunks],
        )
        for doc in page.documents
    }


def _write(store: Store, library_id: str, ops: list[WriteOp]) -> None:
    for op in ops:  # one at a time: a patch of a missing document is refused alone
        store.commit_writes([(library_id, [op])])


def _catch_up(source: Store, target: dict[str, Any], after: int, max_changes: int) -> int:
    """Apply ``source``'s pages after ``after`` to ``target`` (a dict standing for the replica)."""
    while True:
        page = source.changes_since("lib", after, DIM, max_changes=max_changes)
        for doc in page.documents:
            target[doc.id] = (
                doc.title,
                doc.text,
                doc.metadata,
                [(c.chunk_index, c.start, c.end, c.vector.tolist()) for c in doc.chunks],
            )
        for doc_id in page.deleted:
            target.pop(doc_id, None)
        assert page.upto >= after
        after = page.upto
        if page.complete:
            return after


@pytest.mark.parametrize("seed", range(6))
def test_a_copy_built_from_change_pages_equals_the_library_from_any_position(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = Store(tmp_path / "store.sqlite3")
    store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
    store.create_library(new_library_record("other", "t", "other", DIM, "brute_force", "l2", {}))
    copy: dict[str, Any] = {}
    position = 0
    for _ in range(4):
        _write(store, "lib", _random_ops(rng, 25))
        _write(store, "other", _random_ops(rng, 5))  # another library's writes move the log on too
        position = _catch_up(store, copy, position, max_changes=rng.choice([1, 3, 7, 1000]))
        assert copy == _state(store, "lib")
        assert position == store.last_seq()
    bootstrap: dict[str, Any] = {}
    _catch_up(store, bootstrap, 0, max_changes=5)
    assert bootstrap == _state(store, "lib")
    store.close()


def test_an_embedding_given_by_the_client_travels_as_the_documents_own(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite3")
    store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
    vector = np.arange(DIM, dtype=np.float32)
    doc = DocumentRecord("v", None, None, {}, vector, (ChunkRecord(0, 0, 0, vector),))
    store.commit_writes([("lib", [Upsert(doc)])])
    (sent,) = store.changes_since("lib", 0, DIM).documents
    assert sent.embedding is not None and sent.embedding.tolist() == vector.tolist()
    store.close()


# -- positions -----------------------------------------------------------------------------------------


def test_positions_survive_a_restart_and_an_unreadable_file_means_none(tmp_path: Path) -> None:
    path = tmp_path / "replication.json"
    positions = Positions(path)
    assert positions.get("k") is None
    positions.set("k", 2, 41)
    positions.set("j", 1, 7)
    positions.forget("j")
    assert Positions(path).get("k") == (2, 41) and Positions(path).get("j") is None
    path.write_text("{not json")
    assert Positions(path).get("k") is None  # every copy then bootstraps: never a position ahead of the data
