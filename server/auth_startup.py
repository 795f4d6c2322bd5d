"""Start-up of auth: read the minted keys and the libraries' tenants from the store, decide whether
keys are required, log it, and apply it to a key ring.

The decision and its log lines are :func:`arrwdb.engine.auth_policy.decide_auth`.  With the engine in this
process the app reads its engine's store; with HTTP worker processes the parent reads the store
once, before the engine starts, logs the decision and hands ``enabled`` to every worker (whose key
rings then load the minted keys through the engine protocol).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from dataclasses import asdict

from arrwdb.config import Settings
from arrwdb.engine.auth_policy import AuthDecision, decide_auth
from arrwdb.errors import StorageFailure
from arrwdb.server.auth import KeyRing
from arrwdb.store.api_keys import ApiKeyRecord
from arrwdb.store.store import Store


def _read(store: Store) -> tuple[list[ApiKeyRecord], Counter[str]]:
    return store.api_keys(), Counter(library.tenant for library in store.libraries())


def _decide(settings: Settings, records: list[ApiKeyRecord], tenants: Counter[str]) -> AuthDecision:
    return decide_auth(settings.api_key_list(), settings.admin_key.strip(), records, tenants)


async def start_auth(keyring: KeyRing, store: Store, settings: Settings) -> AuthDecision:
    """Put the store's minted keys in ``keyring``, switch it on or off, and log the decision."""
    # Read on a worker thread: a store connection opened on the caller's thread would stay open
    # for that thread's life, and SQLite then keeps every closed connection's file open too.
    records, tenants = await asyncio.to_thread(_read, store)
    keyring.replace_minted([asdict(record) for record in records])
    decision = _decide(settings, records, tenants)
    keyring.enabled = decision.enabled
    decision.log()
    return decision


def decide_from_store(settings: Settings) -> AuthDecision:
    """The decision for a server about to start on ``settings.data_dir`` (read, then closed)."""
    path = settings.data_dir / "arrwdb.sqlite3"
    try:
        store = Store(path)
        try:
            records, tenants = _read(store)
        finally:
            store.close()
    except sqlite3.Error as exc:
        raise StorageFailure(f"cannot read the store {path}: {exc}") from None
    return _decide(settings, records, tenants)
