"""The cluster's catalog: which libraries exist, their settings, and where each shard lives.

One SQLite file in the folder of the catalog engine (``arrwdb-engine-0``), written with the store's
durability (WAL, ``synchronous=FULL``: a library that was acknowledged survives ``kill -9`` and power
loss).  The catalog engine is the cluster's single point for creating, listing and deleting libraries
and for API keys: while it is down those calls answer 503, and searches and writes to libraries whose
shard map a frontend already holds go on (docs/SCALING.md, "Single points").

A library is written in two steps: ``reserve`` (its name taken, not yet listed), then ``publish`` once
every shard exists on its engine.  A reservation left by a frontend that died in between is taken
over by the next create of that name (``stale_after_s``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from arrwdb.cluster.shard_state import change
from arrwdb.errors import Conflict, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS libraries (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    published INTEGER NOT NULL,
    reserved_at REAL NOT NULL,
    UNIQUE (tenant, name)
);
"""


class Catalog:
    """Library entries as plain dicts: ``{id, tenant, name, shards, replicas, placement, copies, in_sync,
    epochs, settings}`` (``placement[s]``: the primary of shard ``s``; ``copies``, ``in_sync``, ``epochs``:
    ``arrwdb.cluster.shard_state``; ``settings``: what creation was given)."""

    def __init__(self, path: Path, stale_after_s: float = 60.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.stale_after_s = stale_after_s

    def close(self) -> None:
        self._db.close()

    def reserve(self, entry: dict[str, Any]) -> None:
        """Take ``entry``'s name for it (unlisted until ``publish``); Conflict when the name is held by
        a published library or by a reservation younger than ``stale_after_s``."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT id, published, reserved_at FROM libraries WHERE tenant = ? AND name = ?",
                    (entry["tenant"], entry["name"]),
                ).fetchone()
                if row is not None:
                    if row[1] or now - row[2] < self.stale_after_s:
                        raise Conflict(f"a library named {entry['name']!r} already exists")
                    self._db.execute("DELETE FROM libraries WHERE id = ?", (row[0],))
                self._db.execute(
                    "INSERT INTO libraries VALUES (?, ?, ?, ?, 0, ?)",
                    (entry["id"], entry["tenant"], entry["name"], orjson.dumps(entry).decode(), now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def publish(self, entry: dict[str, Any]) -> None:
        """List the reserved ``entry``, now complete (its shards exist)."""
        with self._lock:
            self._db.execute(
                "UPDATE libraries SET published = 1, body = ? WHERE id = ?", (orjson.dumps(entry).decode(), entry["id"])
            )

    def change_shard(
        self, library_id: str, shard: int, kind: str, epoch: int, engine: str, by: str | None = None
    ) -> dict[str, Any]:
        """Apply a role change to one shard of a published library (``arrwdb.cluster.shard_state.change``),
        durably, and return the new entry; Conflict when the entry is not as the caller saw it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT body FROM libraries WHERE id = ? AND published = 1", (library_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"library {library_id!r} not found")
                entry = change(orjson.loads(row[0]), shard, kind, epoch, engine, by)
                self._db.execute(
                    "UPDATE libraries SET body = ? WHERE id = ?", (orjson.dumps(entry).decode(), library_id)
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return entry

    def remove(self, library_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM libraries WHERE id = ?", (library_id,))

    def get(self, tenant: str, key: str) -> dict[str, Any]:
        """The published library of ``tenant`` named ``key`` (or with id ``key``)."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM libraries WHERE tenant = ? AND (name = ? OR id = ?) AND published = 1 "
                "ORDER BY name = ? DESC LIMIT 1",
                (tenant, key, key, key),
            ).fetchone()
        if row is None:
            raise NotFound(f"library {key!r} not found")
        return orjson.loads(row[0])  # type: ignore[no-any-return]

    def entries(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Published libraries (of one tenant, or all), by name."""
        where, args = ("AND tenant = ?", (tenant,)) if tenant is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM libraries WHERE published = 1 {where} ORDER BY tenant, name", args
            ).fetchall()
        return [orjson.loads(row[0]) for row in rows]
