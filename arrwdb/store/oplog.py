"""The operation log: one entry per document write, and the reads a replica catches up with (the
changes of a library after a sequence, the last sequence of each library)."""

from __future__ import annotations

import sqlite3

import numpy as np
import orjson

from arrwdb.records import ChangePage, ChunkRecord, DocumentRecord


def log(conn: sqlite3.Connection, library_id: str, doc_id: str, op: str) -> int:
    cursor = conn.execute("INSERT INTO oplog (library_id, doc_id, op) VALUES (?, ?, ?)", (library_id, doc_id, op))
    return int(cursor.lastrowid or 0)


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(seq) FROM oplog").fetchone()
    return int(row[0] or 0)


def changes_since(
    conn: sqlite3.Connection, library_id: str, after: int, dimension: int, max_changes: int
) -> ChangePage:
    """The library's changes with a sequence above ``after``, at most ``max_changes`` log entries,
    read in one transaction (the log and the documents agree): what a replica applies to catch up."""
    conn.execute("BEGIN")
    try:
        logged = conn.execute(
            "SELECT seq, doc_id FROM oplog WHERE seq > ? AND library_id = ? ORDER BY seq LIMIT ?",
            (after, library_id, max_changes),
        ).fetchall()
        complete = len(logged) < max_changes
        # A full page covers up to its last entry; a last page covers everything logged so far
        # (the store's newest sequence, whichever library it belongs to).
        upto = int(conn.execute("SELECT MAX(seq) FROM oplog").fetchone()[0] or 0) if complete else logged[-1][0]
        ids = list(dict.fromkeys(row[1] for row in logged))
        documents = _current_documents(conn, library_id, ids, dimension)
    finally:
        conn.execute("COMMIT")
    found = {doc.id for doc in documents}
    deleted = tuple(doc_id for doc_id in ids if doc_id not in found)
    return ChangePage(after, max(upto, after), tuple(documents), deleted, complete)


def library_sequences(conn: sqlite3.Connection, library_ids: list[str]) -> dict[str, int]:
    """The sequence of the last write logged for each library (0: none logged)."""
    found = {library_id: 0 for library_id in library_ids}
    for library_id in library_ids:
        row = conn.execute("SELECT MAX(seq) FROM oplog WHERE library_id = ?", (library_id,)).fetchone()
        found[library_id] = int(row[0] or 0)
    return found


def _current_documents(
    conn: sqlite3.Connection, library_id: str, ids: list[str], dimension: int
) -> list[DocumentRecord]:
    """The stored state of the documents ``ids`` that exist, with their chunks and vectors."""
    documents: list[DocumentRecord] = []
    for start in range(0, len(ids), 500):  # SQLite's bound on parameters per statement
        part = ids[start : start + 500]
        marks = ",".join("?" * len(part))
        chunks: dict[str, list[ChunkRecord]] = {}
        for doc_id, index, begin, end, blob in conn.execute(
            f'SELECT doc_id, chunk_index, start, "end", vector FROM chunks WHERE library_id = ? AND doc_id IN ({marks})'
            " ORDER BY doc_id, chunk_index",
            (library_id, *part),
        ):
            vector = np.frombuffer(blob, dtype=np.float32, count=dimension)
            chunks.setdefault(doc_id, []).append(ChunkRecord(index, begin, end, vector))
        for row in conn.execute(
            f"SELECT id, title, text, metadata, has_embedding FROM documents WHERE library_id = ? AND id IN ({marks})",
            (library_id, *part),
        ):
            own = tuple(chunks.get(row[0], ()))
            embedding = own[0].vector if row[4] and own else None
            documents.append(DocumentRecord(row[0], row[1], row[2], orjson.loads(row[3]), embedding, own))
    return documents
