"""A request's upserts written together (store_bulk) leave the store, and report, exactly what the
same upserts written one at a time do: rows, sequence numbers, chunk row ids, replaced rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from arrwdb.records import AppliedWrite, ChunkRecord, Delete, DocumentRecord, Upsert, WriteOp
from arrwdb.store.bulk import upserts_of_distinct_documents
from arrwdb.store.store import Store, new_library_record

DIM = 3


def _doc(doc_id: str, chunks: int, seed: int, title: str | None = None) -> DocumentRecord:
    rng = np.random.default_rng(seed)
    records = tuple(
        ChunkRecord(i, 4 * i, 4 * i + 4, rng.standard_normal(DIM).astype(np.float32)) for i in range(chunks)
    )
    text = "abcd" * chunks
    return DocumentRecord(doc_id, title, text, {"seed": seed}, None, records)


def _requests() -> list[list[WriteOp]]:
    first = [Upsert(_doc(f"d{i}", 1 + i % 3, i, title=f"T{i}" if i % 2 else None)) for i in range(6)]
    # Replaces some (fewer or more chunks than before), adds new ones, all distinct: the bulk path.
    second = [
        Upsert(_doc(doc_id, chunks, 100 + n)) for n, (doc_id, chunks) in enumerate([("d1", 3), ("d4", 1), ("new", 2)])
    ]
    # Deletes go one by one; d2 rewritten and then deleted takes the highest row ids with it, so the next
    # bulk request's ids start above AUTOINCREMENT's counter, not right above the table's largest id.
    third: list[WriteOp] = [Delete("d0"), Upsert(_doc("d2", 2, 7)), Delete("d2")]
    fourth = [Upsert(_doc("d5", 1, 8)), Upsert(_doc("d6", 2, 9))]
    return [first, second, third, fourth]


def _run(path: Path, bulk: bool, monkeypatch) -> tuple[list[list[AppliedWrite]], list[tuple]]:
    if not bulk:
        monkeypatch.setattr("arrwdb.store.store.upserts_of_distinct_documents", lambda ops: False)
    store = Store(path)
    store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
    results = []
    for ops in _requests():
        (result,) = store.commit_writes([("lib", ops)])
        assert not isinstance(result, Exception)
        results.append(result)
    store.close()
    monkeypatch.undo()
    with sqlite3.connect(path) as conn:
        tables = [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("documents", "chunks", "oplog")
        ]
    return results, tables


def _comparable(write: AppliedWrite) -> tuple:
    vectors = None if write.added_vectors is None else write.added_vectors.tobytes()
    return (
        write.library_id,
        write.doc_id,
        write.removed_rows,
        write.added_rows,
        vectors,
        write.metadata,
        write.seq,
        write.title,
    )


def test_bulk_upserts_equal_one_by_one(tmp_path, monkeypatch) -> None:
    assert upserts_of_distinct_documents(_requests()[0]) and upserts_of_distinct_documents(_requests()[1])
    assert not upserts_of_distinct_documents(_requests()[2])  # has a delete
    assert not upserts_of_distinct_documents(
        [Upsert(_doc("x", 1, 1)), Upsert(_doc("x", 1, 2))]
    )  # the same document twice
    one_by_one, tables_one = _run(tmp_path / "one.sqlite3", bulk=False, monkeypatch=monkeypatch)
    bulk, tables_bulk = _run(tmp_path / "bulk.sqlite3", bulk=True, monkeypatch=monkeypatch)
    assert [[_comparable(w) for w in r] for r in bulk] == [[_comparable(w) for w in r] for r in one_by_one]
    assert tables_bulk == tables_one
    replaced = {w.doc_id: w.removed_rows for w in bulk[1]}
    assert replaced["d1"] and replaced["d4"] and replaced["new"] == ()  # the replaced rows are reported
    # The fourth request's rows skip the ids the deleted d2 held (AUTOINCREMENT never reuses them).
    assert min(bulk[3][0].added_rows) > max(bulk[2][1].added_rows)


def test_a_bulk_request_for_a_missing_library_fails_alone(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
    ops = [Upsert(_doc("a", 1, 1)), Upsert(_doc("b", 1, 2))]
    missing, fine = store.commit_writes([("gone", ops), ("lib", ops)])
    assert isinstance(missing, Exception) and not isinstance(fine, Exception)
    assert store.get_document("lib", "b", DIM)["id"] == "b"
    store.close()
