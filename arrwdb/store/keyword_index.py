"""The keyword index as the Store reaches it: rebuilt at start-up when its table is missing, searched
(``keyword_scores.read_many``) with a term-score cache per thread, and sized for the statistics."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from arrwdb.errors import NotFound, StorageFailure
from arrwdb.store import keyword_scores
from arrwdb.store import keywords as keyword_store
from arrwdb.store.db import Database
from arrwdb.store.keyword_scores import TermScoreCache


class KeywordIndexStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._term_scores = threading.local()  # a TermScoreCache beside each thread's reader connection

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
