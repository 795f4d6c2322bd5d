"""Upserts: the statements that write documents, for one document or a whole request at once.

Written one statement per row, an upsert is five statements (its existing rows, their delete, the
oplog entry, the document row, its chunk rows); a 1,000-document import spent ~22 ms a request in
them, a third of its time.  Here each statement runs once for all the documents with ``executemany``,
and what SQLite assigned (oplog sequence numbers, chunk row ids) is read back in one query each:
inside the writer's transaction nothing else inserts, and AUTOINCREMENT ids only grow, so the rows
above the largest id before the insert are exactly the new ones, in insertion order.  A request's
documents written together leave what they would written one call each
(tests/unit/test_store_bulk.py).

A request whose operations are all upserts of distinct documents is written in one call; any other
(a delete among them, or a document written twice, which must see its own first write) one operation
at a time, in order (``Store._apply``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import islice

import numpy as np
import orjson

from arrwdb.errors import InvalidInput, NotFound
from arrwdb.records import MAX_KEYS, AppliedWrite, DocumentRecord, Patch, Upsert, WriteOp
from arrwdb.store import keywords as keyword_store

_IDS_PER_QUERY = 500  # bound parameters per IN (...) query, well under SQLite's limit


def upserts_of_distinct_documents(ops: Sequence[WriteOp]) -> bool:
    """Whether ``upsert_many`` may write the request at once: all upserts, of distinct documents."""
    if not all(isinstance(op, Upsert) for op in ops):
        return False
    return len({op.document.id for op in ops}) == len(ops)  # type: ignore[union-attr]


def upsert_many(conn: sqlite3.Connection, library_id: str, docs: list[DocumentRecord]) -> list[AppliedWrite]:
    existing = _existing_rows(conn, library_id, [doc.id for doc in docs])
    replaced = [(library_id, doc.id) for doc in docs if doc.id in existing]
    if replaced:
        conn.executemany("DELETE FROM chunks WHERE library_id = ? AND doc_id = ?", replaced)
        keyword_store.delete_rows(conn, library_id, [row for rows in existing.values() for row in rows])
    seqs = _insert_returning_ids(
        conn,
        "oplog",
        "seq",
        "INSERT INTO oplog (library_id, doc_id, op) VALUES (?, ?, 'upsert')",
        [(library_id, doc.id) for doc in docs],
    )
    conn.executemany(
        "INSERT INTO documents (library_id, id, title, text, metadata, has_embedding, seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (library_id, id) DO UPDATE SET title = excluded.title,"
        " text = excluded.text, metadata = excluded.metadata, has_embedding = excluded.has_embedding,"
        " seq = excluded.seq",
        [
            (
                library_id,
                doc.id,
                doc.title,
                doc.text,
                orjson.dumps(doc.metadata).decode(),
                int(doc.embedding is not None),
                seq,
            )
            for doc, seq in zip(docs, seqs, strict=True)
        ],
    )
    row_ids = iter(
        _insert_returning_ids(
            conn,
            "chunks",
            "row_id",
            'INSERT INTO chunks (library_id, doc_id, chunk_index, start, "end", vector) VALUES (?, ?, ?, ?, ?, ?)',
            [
                (library_id, doc.id, chunk.chunk_index, chunk.start, chunk.end, chunk.vector.tobytes())
                for doc in docs
                for chunk in doc.chunks
            ],
        )
    )
    added_rows = [tuple(islice(row_ids, len(doc.chunks))) for doc in docs]
    # The chunks' texts into the keyword index, in this transaction (arrwdb.store.keywords).
    keyword_store.insert_rows(
        conn,
        library_id,
        (
            (row, doc.text[chunk.start : chunk.end])
            for doc, rows in zip(docs, added_rows, strict=True)
            if doc.text
            for row, chunk in zip(rows, doc.chunks, strict=True)
        ),
    )
    # One matrix for the request, each document's vectors a slice of it (a stack per document cost
    # a fifth of the transaction's time).
    matrix = np.stack([chunk.vector for doc in docs for chunk in doc.chunks]).astype(np.float32, copy=False)
    applied, start = [], 0
    for doc, seq, added in zip(docs, seqs, added_rows, strict=True):
        count = len(doc.chunks)
        removed = existing.get(doc.id, ())
        vectors = matrix[start : start + count]
        applied.append(
            AppliedWrite(
                library_id, doc.id, removed, added, vectors, doc.metadata, seq, doc.title, doc.text is not None
            )
        )
        start += count
    return applied


def patch_document(conn: sqlite3.Connection, library_id: str, op: Patch, seq: int) -> AppliedWrite:
    """Merge ``op`` into the document's title and metadata (RFC 7386: a None value removes a key).
    The chunks, vectors and keyword index rows stay: nothing is embedded again."""
    row = conn.execute(
        "SELECT title, metadata, text IS NOT NULL FROM documents WHERE library_id = ? AND id = ?",
        (library_id, op.doc_id),
    ).fetchone()
    if row is None:
        raise NotFound(f"document {op.doc_id!r} not found")
    title = op.title if op.title_given else row[0]
    metadata = orjson.loads(row[1])
    for key, value in op.metadata.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    if len(metadata) > MAX_KEYS:
        raise InvalidInput(f"metadata would have {len(metadata)} keys after the patch; at most {MAX_KEYS} are allowed")
    conn.execute(
        "UPDATE documents SET title = ?, metadata = ?, seq = ? WHERE library_id = ? AND id = ?",
        (title, orjson.dumps(metadata).decode(), seq, library_id, op.doc_id),
    )
    rows = tuple(
        r[0]
        for r in conn.execute(
            "SELECT row_id FROM chunks WHERE library_id = ? AND doc_id = ? ORDER BY chunk_index",
            (library_id, op.doc_id),
        )
    )
    # The same rows, no vectors: the index keeps them; the library's fields of each row are replaced.
    return AppliedWrite(library_id, op.doc_id, (), rows, None, metadata, seq, title, bool(row[2]))


def _existing_rows(conn: sqlite3.Connection, library_id: str, doc_ids: list[str]) -> dict[str, tuple[int, ...]]:
    """Each document's current chunk rows, in row order (as the one-by-one path reads them)."""
    found: dict[str, list[int]] = {}
    for start in range(0, len(doc_ids), _IDS_PER_QUERY):
        part = doc_ids[start : start + _IDS_PER_QUERY]
        marks = ",".join("?" * len(part))
        # No ORDER BY: with one, SQLite walks the library's rows in row order (chunks_by_library) and
        # filters them, reading the whole library per request; this way it looks each id up in
        # chunks_by_doc, and the few rows of each document are sorted here.
        for doc_id, row_id in conn.execute(
            f"SELECT doc_id, row_id FROM chunks WHERE library_id = ? AND doc_id IN ({marks})", (library_id, *part)
        ):
            found.setdefault(doc_id, []).append(row_id)
    return {doc_id: tuple(sorted(rows)) for doc_id, rows in found.items()}


def _insert_returning_ids(
    conn: sqlite3.Connection, table: str, id_column: str, insert: str, rows: list[tuple[object, ...]]
) -> list[int]:
    """``executemany(insert, rows)`` and the ids SQLite gave the new rows, in insertion order."""
    if len(rows) == 1:  # a single insert (one document, one chunk): SQLite says its id
        return [int(conn.execute(insert, rows[0]).lastrowid or 0)]
    (before,) = conn.execute(f"SELECT COALESCE(MAX({id_column}), 0) FROM {table}").fetchone()
    conn.executemany(insert, rows)
    ids = [
        row[0]
        for row in conn.execute(
            f"SELECT {id_column} FROM {table} WHERE {id_column} > ? ORDER BY {id_column}", (before,)
        )
    ]
    if len(ids) != len(rows):  # cannot happen inside the writer's transaction; never guess if it did
        raise sqlite3.IntegrityError(f"{table}: inserted {len(rows)} rows but found {len(ids)} new ids")
    return ids
