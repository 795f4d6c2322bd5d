"""The store: libraries, documents, chunks and their vectors, the source of truth for every index.

Writes are group-committed: many write requests in one transaction, one fsync.  The file, its
schema and its connections are :mod:`arrwdb.store.db`'s.  The Store is the one object the engine
reaches every table through; the API-key table is :mod:`arrwdb.store.api_keys`'s, the keyword index
:mod:`arrwdb.store.keyword_index`'s, document and vector reads :mod:`arrwdb.store.document_reads`'
and the operation log :mod:`arrwdb.store.oplog`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.errors import ArrwdbError, Conflict, NotFound, StorageFailure
from arrwdb.records import (
    AppliedWrite,
    ChangePage,
    HitRow,
    LibraryRecord,
    Patch,
    Upsert,
    WriteOp,
)
from arrwdb.store import document_reads, keyword_scores, oplog
from arrwdb.store import keywords as keyword_store
from arrwdb.store.api_keys import ApiKeyRecord, ApiKeyStore
from arrwdb.store.bulk import patch_document, upsert_many, upserts_of_distinct_documents
from arrwdb.store.db import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: arrwdb.store.store's public constant
from arrwdb.store.db import Database, now
from arrwdb.store.keyword_index import KeywordIndexStore

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
        self._keywords = KeywordIndexStore(self._db)

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
            return patch_document(conn, library_id, op, oplog.log(conn, library_id, op.doc_id, "patch"))
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
        seq = oplog.log(conn, library_id, op.doc_id, "delete")
        return AppliedWrite(library_id, op.doc_id, removed, (), None, None, seq)

    # -- the keyword index: KeywordIndexStore's ------------------------------------------------

    def ensure_keyword_index(self, library_id: str) -> int | None:
        return self._keywords.ensure_keyword_index(library_id)

    def keyword_read_many(
        self, library_id: str, searches: Sequence[tuple[Sequence[str], int, np.ndarray | None]]
    ) -> list[list[tuple[int, float]] | keyword_scores.Summable]:
        return self._keywords.keyword_read_many(library_id, searches)

    def keyword_index_statistics(self, library_id: str) -> dict[str, Any]:
        return self._keywords.keyword_index_statistics(library_id)

    # -- reads: document_reads' and oplog's, on this thread's reader connection ------------------

    def get_document(self, library_id: str, doc_id: str, dimension: int) -> dict[str, Any]:
        return document_reads.get_document(self._db.reader(), library_id, doc_id, dimension)

    def list_documents(
        self, library_id: str, limit: int, after: str | None, dimension: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        return document_reads.list_documents(self._db.reader(), library_id, limit, after, dimension)

    def hit_rows(self, row_ids: Sequence[int], include_text: bool) -> dict[int, HitRow]:
        return document_reads.hit_rows(self._db.reader(), row_ids, include_text)

    def iter_vectors(
        self, library_id: str, dimension: int, after: int = -1, page: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return document_reads.iter_vectors(self._db.reader(), library_id, dimension, after, page)

    def live_row_ids(self, library_id: str) -> np.ndarray:
        return document_reads.live_row_ids(self._db.reader(), library_id)

    def count_documents(self, library_id: str) -> int:
        return document_reads.count_documents(self._db.reader(), library_id)

    def count_rows_upto(self, library_id: str, last_row: int) -> int:
        return document_reads.count_rows_upto(self._db.reader(), library_id, last_row)

    def iter_document_rows(self, library_id: str) -> Iterator[tuple[str, str | None, dict[str, Any], bool, list[int]]]:
        return document_reads.iter_document_rows(self._db.reader(), library_id)

    def last_seq(self) -> int:
        return oplog.last_seq(self._db.reader())

    def changes_since(self, library_id: str, after: int, dimension: int, max_changes: int = 2000) -> ChangePage:
        return oplog.changes_since(self._db.reader(), library_id, after, dimension, max_changes)

    def library_sequences(self, library_ids: list[str]) -> dict[str, int]:
        return oplog.library_sequences(self._db.reader(), library_ids)


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
