"""Start-up of auth: load the minted keys, decide whether keys are required, and log it.

The decision and its log lines are :func:`arrwdb.auth_policy.decide_auth`; this module reads what it
needs from the store (off the event loop) and applies the result to the app's key ring.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from arrwdb.api_key_store import ApiKeyRecord
from arrwdb.auth_policy import AuthDecision, decide_auth
from arrwdb.config import Settings
from arrwdb.server.admin import load_minted_keys
from arrwdb.server.auth import KeyRing
from arrwdb.store import Store


def _read(store: Store) -> tuple[list[ApiKeyRecord], Counter[str]]:
    return store.api_keys(), Counter(library.tenant for library in store.libraries())


async def start_auth(keyring: KeyRing, store: Store, settings: Settings) -> AuthDecision:
    """Put the store's minted keys in ``keyring``, switch it on or off, and log the decision."""
    # Read on a worker thread: a store connection opened on the caller's thread would stay open
    # for that thread's life, and SQLite then keeps every closed connection's file open too.
    records, tenants = await asyncio.to_thread(_read, store)
    load_minted_keys(keyring, records)
    decision = decide_auth(settings.api_key_list(), settings.admin_key.strip(), records, tenants)
    keyring.enabled = decision.enabled
    decision.log()
    return decision
