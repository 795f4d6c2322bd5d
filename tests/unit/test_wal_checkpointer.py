"""The store's file: new stores get 8 KiB pages, older stores keep theirs, and committed rows reach the
database file through the background checkpointer (the writer's own checkpoint is only a backstop
far above what these commits write)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np

from arrwdb.records import ChunkRecord, DocumentRecord, Upsert
from arrwdb.store.db import PAGE_SIZE
from arrwdb.store.store import Store, new_library_record
from arrwdb.store.wal_checkpointer import BACKSTOP_PAGES

DIM = 64


def _upserts(start: int, count: int) -> list[Upsert]:
    vectors = np.random.default_rng(start).standard_normal((count, DIM)).astype(np.float32)
    return [
        Upsert(DocumentRecord(f"d{start + i}", None, None, {}, vectors[i], (ChunkRecord(0, 0, 0, vectors[i]),)))
        for i in range(count)
    ]


def test_new_store_pages_and_backstop(tmp_path: Path) -> None:
    store = Store(tmp_path / "arrwdb.sqlite3")
    try:
        conn = store._db.writer
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    finally:
        store.close()


def test_existing_store_keeps_its_page_size(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.close()
    store = Store(path)
    try:
        assert store._db.writer.execute("PRAGMA page_size").fetchone()[0] == 4096
        store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
        (result,) = store.commit_writes([("lib", _upserts(0, 10))])
        assert not isinstance(result, Exception)
        assert store.count_documents("lib") == 10
    finally:
        store.close()


def test_commits_reach_the_database_file_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "arrwdb.sqlite3"
    store = Store(path)
    checkpointer = store._db._checkpointer._thread
    try:
        store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
        size_before = path.stat().st_size
        for start in range(0, 600, 200):
            (result,) = store.commit_writes([("lib", _upserts(start, 200))])
            assert not isinstance(result, Exception)
        # Far below the writer's backstop: only the checkpointer can copy these pages into the file,
        # which grows by at least their vectors.
        wal_pages = (tmp_path / "arrwdb.sqlite3-wal").stat().st_size // PAGE_SIZE
        assert wal_pages < BACKSTOP_PAGES
        deadline = time.monotonic() + 10.0
        while path.stat().st_size <= size_before + 600 * DIM * 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_size > size_before + 600 * DIM * 4
        assert store.count_documents("lib") == 600
    finally:
        store.close()
    assert not checkpointer.is_alive()  # closing the store stops its checkpointer
