"""The store: libraries, documents, chunks and their vectors, the source of truth for every index.

Writes are group-committed: many write requests in one transaction, one fsync.  The file, its
schema and its connections are :mod:`arrwdb.store.db`'s; the API-key table is
:mod:`arrwdb.store.api_keys`'s, reached through the same Store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.errors import ArrwdbError, Conflict, NotFound, StorageFailure
from arrwdb.records import (
    AppliedWrite,
    ChangePage,
    ChunkRecord,
    DocumentRecord,
    HitRow,
    LibraryRecord,
    Patch,
    Upsert,
    WriteOp,
)
from arrwdb.store import keyword_scores
from arrwdb.store import keywords as keyword_store
from arrwdb.store.api_keys import ApiKeyRecord, ApiKeyStore
from arrwdb.store.bulk import patch_document, upsert_many, upserts_of_distinct_documents
from arrwdb.store.db import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: arrwdb.store.store's public constant
from arrwdb.store.db import Database, now
from arrwdb.store.keyword_scores import TermScoreCache

WriteResult = list[AppliedWrite] | ArrwdbError


def _check_library(conn: sqlite3.Connection, library_id: str) -> None:
    if conn.execute("SELECT 1 FROM libraries WHERE id = ?", (library_id,)).fetchone() is None:
        raise NotFound(f"library {library_id!r} not found")


def _library_from_row(row: sqlite3.Row) -> LibraryRecord:
    return LibraryRecord(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        dimension=row["dimension"],
        index_type=row["index_type"],
        metric=row["metric"],
        index_params=orjson.loads(row["index_params"]),
        created_at=row["created_at"],
        model=row["model"],
    )


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(path)
        self._keys = ApiKeyStore(self._db)
        self._term_scores = threading.local()  # a TermScoreCache beside each thread's reader connection

    def schema_version(self) -> int:
        return self._db.schema_version()

    def checkpoint(self) -> None:
        """Fold the WAL back into the database; readers can starve SQLite's automatic checkpoint."""
        self._db.checkpoint()

    def close(self) -> None:
        self._db.close()

    # -- libraries ---------------------------------------------------------------------------

    def create_library(self, library: LibraryRecord) -> LibraryRecord:
        with self._db.write_lock:
            try:
                # The library and its keyword index in one transaction: neither exists without the other.
                self._db.writer.execute("BEGIN IMMEDIATE")
                keyword_store.create_table(self._db.writer, library.id)
                self._db.writer.execute(
                    "INSERT INTO libraries (id, tenant, name, dimension, index_type, metric, index_params,"
                    " created_at, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        library.id,
                        library.tenant,
                        library.name,
                        library.dimension,
                        library.index_type,
                        library.metric,
                        orjson.dumps(library.index_params).decode(),
                        library.created_at,
                        library.model,
                    ),
                )
                self._db.writer.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.rollback()
                raise Conflict(f"a library named {library.name!r} already exists") from exc
            except sqlite3.Error as exc:
                self._db.rollback()
                raise StorageFailure(f"could not store the library: {exc}") from exc
        return library

    def delete_library(self, library_id: str) -> None:
        with self._db.write_lock:
            try:
                self._db.writer.execute("BEGIN IMMEDIATE")
                for table, column in (("chunks", "library_id"), ("documents", "library_id")):
                    self._db.writer.execute(f"DELETE FROM {table} WHERE {column} = ?", (library_id,))
                self._db.writer.execute("DELETE FROM oplog WHERE library_id = ?", (library_id,))
                keyword_store.drop_table(self._db.writer, library_id)
                self._db.writer.execute("DELETE FROM libraries WHERE id = ?", (library_id,))
                self._db.writer.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.rollback()
                raise StorageFailure(f"could not delete the library: {exc}") from exc

    def libraries(self, tenant: str | None = None) -> list[LibraryRecord]:
        if tenant is None:
            rows = self._db.reader().execute("SELECT * FROM libraries ORDER BY created_at, id").fetchall()
        else:
            rows = (
                self._db.reader()
                .execute("SELECT * FROM libraries WHERE tenant = ? ORDER BY created_at, id", (tenant,))
                .fetchall()
            )
        return [_library_from_row(row) for row in rows]

    # -- API keys: ApiKeyStore's, kept on the Store because the server reaches every table through it

    def create_api_key(self, key: ApiKeyRecord) -> ApiKeyRecord:
        return self._keys.create_api_key(key)

    def revoke_api_key(self, key_id: str) -> ApiKeyRecord:
        return self._keys.revoke_api_key(key_id)

    def api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        return self._keys.api_keys(tenant)

    # -- writes (group commit) ---------------------------------------------------------------

    def commit_writes(self, requests: Sequence[tuple[str, Sequence[WriteOp]]]) -> list[WriteResult]:
        """Commit many write requests in ONE transaction (one fsync).

        Each request runs inside its own savepoint, so a request that fails (a delete of a missing
        document, a library deleted meanwhile) is rolled back alone and its neighbours still commit.
        A storage error (disk full, read-only file) fails every request: nothing was committed.
        """
        results: list[WriteResult] = []
        with self._db.write_lock:
            conn = self._db.writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                for library_id, ops in requests:
                    conn.execute("SAVEPOINT request")
                    try:
                        applied = self._apply_request(conn, library_id, ops)
                    except ArrwdbError as exc:
                        conn.execute("ROLLBACK TO request")
                        results.append(exc)
                    else:
                        results.append(applied)
                    conn.execute("RELEASE request")
                conn.execute("COMMIT")
                self._db.committed()
            except sqlite3.Error as exc:
                self._db.rollback()
                failure = StorageFailure(f"the write could not be made durable: {exc}")
                return [failure for _ in requests]
            except BaseException:
                self._db.rollback()  # a bug must not leave the writer inside a transaction for the next commit
                raise
        return results

    def _apply_request(self, conn: sqlite3.Connection, library_id: str, ops: Sequence[WriteOp]) -> list[AppliedWrite]:
        _check_library(conn, library_id)  # once: nothing else writes inside this transaction
        if upserts_of_distinct_documents(ops):  # an import: its documents' statements batched
            return upsert_many(conn, library_id, [op.document for op in ops])  # type: ignore[union-attr]
        applied = [self._apply(conn, library_id, op) for op in ops]
        return [write for write in applied if write is not None]

    def _apply(self, conn: sqlite3.Connection, library_id: str, op: WriteOp) -> AppliedWrite | None:
        """One operation; None for a delete (``missing_ok``) of a document that is not there."""
        if isinstance(op, Upsert):
            return upsert_many(conn, library_id, [op.document])[0]
        if isinstance(op, Patch):
            return patch_document(conn, library_id, op, self._log(conn, library_id, op.doc_id, "patch"))
        removed = tuple(
            row[0]
            for row in conn.execute(
                "SELECT row_id FROM chunks WHERE library_id = ? AND doc_id = ? ORDER BY row_id",
                (library_id, op.doc_id),
            )
        )
        deleted = conn.execute(
            "DELETE FROM documents WHERE library_id = ? AND id = ?", (library_id, op.doc_id)
        ).rowcount
        if not deleted:
            if op.missing_ok:
                return None
            raise NotFound(f"document {op.doc_id!r} not found")
        conn.execute("DELETE FROM chunks WHERE library_id = ? AND doc_id = ?", (library_id, op.doc_id))
        keyword_store.delete_rows(conn, library_id, removed)
        seq = self._log(conn, library_id, op.doc_id, "delete")
        return AppliedWrite(library_id, op.doc_id, removed, (), None, None, seq)

    @staticmethod
    def _log(conn: sqlite3.Connection, library_id: str, doc_id: str, op: str) -> int:
        cursor = conn.execute("INSERT INTO oplog (library_id, doc_id, op) VALUES (?, ?, ?)", (library_id, doc_id, op))
        return int(cursor.lastrowid or 0)

    # -- the keyword index --------------------------------------------------------------------

    def ensure_keyword_index(self, library_id: str) -> int | None:
        """Recovery, at start-up: rebuild the library's keyword index from its chunks if its table is
        missing.  Returns the rows indexed, or None when the table was there."""
        if keyword_store.table_exists(self._db.reader(), library_id):
            return None
        with self._db.write_lock:
            conn = self._db.writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                rows = keyword_store.rebuild(conn, library_id)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.rollback()
                raise StorageFailure(f"could not rebuild the keyword index: {exc}") from exc
        return rows

    def keyword_read_many(
        self, library_id: str, searches: Sequence[tuple[Sequence[str], int, np.ndarray | None]]
    ) -> list[list[tuple[int, float]] | keyword_scores.Summable]:
        """(row id, BM25 score) of the best matching chunks of each (words, limit, allowed) search
        (``keyword_store.search``), in one read transaction: a search FTS5 answered, or its words'
        scores kept by this thread's connection, to add up (``keyword_scores.read_many``, ``top``)."""
        cache = getattr(self._term_scores, "cache", None)
        if cache is None:
            cache = self._term_scores.cache = TermScoreCache()
        try:
            commits = self._db.commits()  # before the read transaction: keyword_scores.read_many
            return keyword_scores.read_many(self._db.reader(), cache, library_id, searches, commits)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise NotFound(f"library {library_id!r} not found") from None
            raise StorageFailure(f"the keyword search failed: {exc}") from exc

    def keyword_index_statistics(self, library_id: str) -> dict[str, Any]:
        """The library's keyword index: its state, chunks indexed and bytes on disk."""
        try:
            return {"state": "ready", "type": "fts5-bm25", **keyword_store.size(self._db.reader(), library_id)}
        except sqlite3.OperationalError as exc:
            raise StorageFailure(f"could not read the keyword index: {exc}") from exc

    # -- reads -------------------------------------------------------------------------------

    def get_document(self, library_id: str, doc_id: str, dimension: int) -> dict[str, Any]:
        row = (
            self._db.reader()
            .execute("SELECT * FROM documents WHERE library_id = ? AND id = ?", (library_id, doc_id))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"document {doc_id!r} not found")
        return self._document_body(library_id, row, dimension)

    def list_documents(
        self, library_id: str, limit: int, after: str | None, dimension: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page in document-id order (keyset pagination: stable under concurrent writes)."""
        rows = (
            self._db.reader()
            .execute(
                "SELECT * FROM documents WHERE library_id = ? AND id > ? ORDER BY id LIMIT ?",
                (library_id, after or "", limit + 1),
            )
            .fetchall()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        docs = [self._document_body(library_id, row, dimension) for row in rows]
        return docs, (rows[-1]["id"] if more else None)

    def _document_body(self, library_id: str, row: sqlite3.Row, dimension: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": row["id"],
            "title": row["title"],
            "text": row["text"],
            "metadata": orjson.loads(row["metadata"]),
        }
        if row["has_embedding"]:
            blob = (
                self._db.reader()
                .execute(
                    "SELECT vector FROM chunks WHERE library_id = ? AND doc_id = ? ORDER BY chunk_index LIMIT 1",
                    (library_id, row["id"]),
                )
                .fetchone()
            )
            if blob is not None:
                body["embedding"] = np.frombuffer(blob[0], dtype=np.float32, count=dimension)
        return body

    def hit_rows(self, row_ids: Sequence[int], include_text: bool) -> dict[int, HitRow]:
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
        cursor = self._db.reader().cursor()
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
        self, library_id: str, dimension: int, after: int = -1, page: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The vectors of a library with row id > ``after``, in row-id order, in pages of
        (row_ids int64, vectors float32)."""
        conn = self._db.reader()
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

    def live_row_ids(self, library_id: str) -> np.ndarray:
        """Sorted row ids of every vector the library holds (index-only scan)."""
        cursor = self._db.reader().execute(
            "SELECT row_id FROM chunks WHERE library_id = ? ORDER BY row_id", (library_id,)
        )
        return np.fromiter((row[0] for row in cursor), dtype=np.int64)

    def count_documents(self, library_id: str) -> int:
        row = self._db.reader().execute("SELECT COUNT(*) FROM documents WHERE library_id = ?", (library_id,)).fetchone()
        return int(row[0])

    def count_rows_upto(self, library_id: str, last_row: int) -> int:
        """How many vectors the library holds with a row id <= ``last_row`` (counted inside SQLite)."""
        row = (
            self._db.reader()
            .execute("SELECT COUNT(*) FROM chunks WHERE library_id = ? AND row_id <= ?", (library_id, last_row))
            .fetchone()
        )
        return int(row[0])

    def iter_document_rows(self, library_id: str) -> Iterator[tuple[str, str | None, dict[str, Any], bool, list[int]]]:
        """(doc_id, title, metadata, whether it has a text, its row ids in chunk order) for every
        document: what the in-memory filter state and hit fields need.
        Two scans (the chunks through their covering index), not a join: a join sorts a million rows in
        a temporary B-tree first, which made this three times slower on a cold start."""
        reader = self._db.reader()
        rows_by_doc: dict[str, list[int]] = {}
        cursor = reader.execute(
            "SELECT doc_id, row_id FROM chunks WHERE library_id = ? ORDER BY doc_id, row_id", (library_id,)
        )
        for doc_id, row_id in cursor:
            rows = rows_by_doc.get(doc_id)
            if rows is None:
                rows_by_doc[doc_id] = [row_id]
            else:
                rows.append(row_id)
        cursor = reader.execute(
            "SELECT id, title, metadata, text IS NOT NULL FROM documents WHERE library_id = ? ORDER BY id",
            (library_id,),
        )
        for doc_id, title, metadata, has_text in cursor:
            yield doc_id, title, orjson.loads(metadata), bool(has_text), rows_by_doc.pop(doc_id, [])

    def last_seq(self) -> int:
        row = self._db.reader().execute("SELECT MAX(seq) FROM oplog").fetchone()
        return int(row[0] or 0)

    def changes_since(self, library_id: str, after: int, dimension: int, max_changes: int = 2000) -> ChangePage:
        """The library's changes with a sequence above ``after``, at most ``max_changes`` log entries,
        read in one transaction (the log and the documents agree): what a replica applies to catch up."""
        conn = self._db.reader()
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

    def library_sequences(self, library_ids: list[str]) -> dict[str, int]:
        """The sequence of the last write logged for each library (0: none logged)."""
        reader = self._db.reader()
        found = {library_id: 0 for library_id in library_ids}
        for library_id in library_ids:
            row = reader.execute("SELECT MAX(seq) FROM oplog WHERE library_id = ?", (library_id,)).fetchone()
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


def new_library_record(
    library_id: str,
    tenant: str,
    name: str,
    dimension: int,
    index_type: str,
    metric: str,
    index_params: dict[str, Any],
    model: str = "",
) -> LibraryRecord:
    return LibraryRecord(library_id, tenant, name, dimension, index_type, metric, index_params, now(), model)
