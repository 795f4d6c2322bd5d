"""The ``api_keys`` table: the API keys minted through the admin endpoints, stored by digest.

The table itself is created by the store's schema migration 2 (:mod:`arrwdb.store.db`); this module
reads and writes its rows through the store's connections, so a key shares the store's durability.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from arrwdb.errors import NotFound, StorageFailure
from arrwdb.store.db import Database, now


@dataclass(frozen=True)
class ApiKeyRecord:
    """A minted API key, without the key: ``digest`` is its SHA-256 (hex), ``prefix`` its first
    characters (enough for a person to tell keys apart, far too few to guess the rest)."""

    id: str
    tenant: str
    name: str
    digest: str
    prefix: str
    created_at: str
    revoked_at: str | None = None


def new_api_key_record(key_id: str, tenant: str, name: str, digest: str, prefix: str) -> ApiKeyRecord:
    return ApiKeyRecord(key_id, tenant, name, digest, prefix, now())


class ApiKeyStore:
    """Create, revoke and list API keys in the store's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create_api_key(self, key: ApiKeyRecord) -> ApiKeyRecord:
        with self._db.write_lock:
            try:
                self._db.writer.execute(
                    "INSERT INTO api_keys (id, tenant, name, digest, prefix, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (key.id, key.tenant, key.name, key.digest, key.prefix, key.created_at),
                )
            except sqlite3.Error as exc:  # a digest collision is impossible for random keys: storage
                raise StorageFailure(f"could not store the API key: {exc}") from exc
        return key

    def revoke_api_key(self, key_id: str) -> ApiKeyRecord:
        """Mark a key revoked (idempotent: a revoked key keeps its first revocation time)."""
        with self._db.write_lock:
            try:
                self._db.writer.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now(), key_id)
                )
                row = self._db.writer.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            except sqlite3.Error as exc:
                raise StorageFailure(f"could not revoke the API key: {exc}") from exc
        if row is None:
            raise NotFound(f"API key {key_id!r} not found")
        return _api_key_from_row(row)

    def api_keys(self, tenant: str | None = None) -> list[ApiKeyRecord]:
        """Every minted key (revoked ones too), oldest first; only ``tenant``'s when given."""
        sql, args = "SELECT * FROM api_keys", ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = ?", (tenant,)
        rows = self._db.reader().execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [_api_key_from_row(row) for row in rows]


def _api_key_from_row(row: sqlite3.Row) -> ApiKeyRecord:
    # The table's columns are the record's fields, by name: a column added without a field fails here.
    return ApiKeyRecord(**dict(row))
