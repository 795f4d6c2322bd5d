"""Reads of a library's documents and vectors on one reader connection: a document's body, a page of
documents, the hit fields of vector rows, the vectors in row-id order, row ids and counts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson

from arrwdb.errors import NotFound
from arrwdb.records import HitRow


def get_document(conn: sqlite3.Connection, library_id: str, doc_id: str, dimension: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM documents WHERE library_id = ? AND id = ?", (library_id, doc_id)).fetchone()
    if row is None:
        raise NotFound(f"document {doc_id!r} not found")
    return document_body(conn, library_id, row, dimension)


def list_documents(
    conn: sqlite3.Connection, library_id: str, limit: int, after: str | None, dimension: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page in document-id order (keyset pagination: stable under concurrent writes)."""
    rows = conn.execute(
        "SELECT * FROM documents WHERE library_id = ? AND id > ? ORDER BY id LIMIT ?",
        (library_id, after or "", limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    docs = [document_body(conn, library_id, row, dimension) for row in rows]
    return docs, (rows[-1]["id"] if more else None)


def document_body(conn: sqlite3.Connection, library_id: str, row: sqlite3.Row, dimension: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row["id"],
        "title": row["title"],
        "text": row["text"],
        "metadata": orjson.loads(row["metadata"]),
    }
    if row["has_embedding"]:
        blob = conn.execute(
            "SELECT vector FROM chunks WHERE library_id = ? AND doc_id = ? ORDER BY chunk_index LIMIT 1",
            (library_id, row["id"]),
        ).fetchone()
        if blob is not None:
            body["embedding"] = np.frombuffer(blob[0], dtype=np.float32, count=dimension)
    return body


def hit_rows(conn: sqlite3.Connection, row_ids: Sequence[int], include_text: bool) -> dict[int, HitRow]:
    """The document fields of each vector row; a row deleted meanwhile is simply absent."""
    if not row_ids:
        return {}
    # SQLite's substr() stops at a NUL character: a text holding one is fetched whole and cut here.
    has_nul = "instr(CAST(d.text AS BLOB), x'00') > 0"
    text_column = (
        f'CASE WHEN {has_nul} THEN NULL ELSE substr(d.text, c.start + 1, c."end" - c.start) END AS text,'
        f" CASE WHEN {has_nul} THEN d.text END AS whole_text"
        if include_text
        else "NULL AS text, NULL AS whole_text"
    )
    placeholders = ",".join("?" * len(row_ids))
    # Plain tuples, not sqlite3.Row: a search batch fetches thousands of rows, and building a Row
    # and looking its columns up by name cost about as much as the query itself.
    cursor = conn.cursor()
    cursor.row_factory = None
    rows = cursor.execute(
        f'SELECT c.row_id, c.doc_id, c.chunk_index, c.start, c."end", d.title, {text_column}, d.metadata'
        " FROM chunks c JOIN documents d ON d.library_id = c.library_id AND d.id = c.doc_id"
        f" WHERE c.row_id IN ({placeholders})",
        tuple(int(r) for r in row_ids),
    ).fetchall()
    loads = orjson.loads
    return {
        row_id: HitRow(row_id, doc_id, chunk_index, title, text if whole is None else whole[start:end], loads(meta))
        for row_id, doc_id, chunk_index, start, end, title, text, whole, meta in rows
    }


def iter_vectors(
    conn: sqlite3.Connection, library_id: str, dimension: int, after: int, page: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The vectors of a library with row id > ``after``, in row-id order, in pages of
    (row_ids int64, vectors float32)."""
    while True:
        rows = conn.execute(
            "SELECT row_id, vector FROM chunks WHERE library_id = ? AND row_id > ? ORDER BY row_id LIMIT ?",
            (library_id, after, page),
        ).fetchall()
        if not rows:
            return
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(-1, dimension)
        yield ids, vectors
        after = int(ids[-1])


def live_row_ids(conn: sqlite3.Connection, library_id: str) -> np.ndarray:
    """Sorted row ids of every vector the library holds (index-only scan)."""
    cursor = conn.execute("SELECT row_id FROM chunks WHERE library_id = ? ORDER BY row_id", (library_id,))
    return np.fromiter((row[0] for row in cursor), dtype=np.int64)


def count_documents(conn: sqlite3.Connection, library_id: str) -> int:
    row = conn.execute("SELECT COUNT(*) FROM documents WHERE library_id = ?", (library_id,)).fetchone()
    return int(row[0])


def count_rows_upto(conn: sqlite3.Connection, library_id: str, last_row: int) -> int:
    """How many vectors the library holds with a row id <= ``last_row`` (counted inside SQLite)."""
    row = conn.execute(
        "SELECT COUNT(*) FROM chunks WHERE library_id = ? AND row_id <= ?", (library_id, last_row)
    ).fetchone()
    return int(row[0])


def iter_document_rows(
    conn: sqlite3.Connection, library_id: str
) -> Iterator[tuple[str, str | None, dict[str, Any], bool, list[int]]]:
    """(doc_id, title, metadata, whether it has a text, its row ids in chunk order) for every
    document: what the in-memory filter state and hit fields need.
    Two scans (the chunks through their covering index), not a join: a join sorts a million rows in
    a temporary B-tree first, which made this three times slower on a cold start."""
    rows_by_doc: dict[str, list[int]] = {}
    cursor = conn.execute(
        "SELECT doc_id, row_id FROM chunks WHERE library_id = ? ORDER BY doc_id, row_id", (library_id,)
    )
    for doc_id, row_id in cursor:
        rows = rows_by_doc.get(doc_id)
        if rows is None:
            rows_by_doc[doc_id] = [row_id]
        else:
            rows.append(row_id)
    cursor = conn.execute(
        "SELECT id, title, metadata, text IS NOT NULL FROM documents WHERE library_id = ? ORDER BY id",
        (library_id,),
    )
    for doc_id, title, metadata, has_text in cursor:
        yield doc_id, title, orjson.loads(metadata), bool(has_text), rows_by_doc.pop(doc_id, [])
