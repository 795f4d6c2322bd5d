"""API keys, tenants and the admin key.

Keys are kept only as SHA-256 digests, never as the keys themselves: the configured ones
(``ARRWDB_API_KEYS``) in memory, the ones minted through the admin endpoints in SQLite as well.  A
presented key is hashed and its digest looked up; the final match is made with
``hmac.compare_digest`` (constant time).  The lookup is keyed by the digest, which an attacker cannot
steer toward a stored one without the key itself, so its timing says nothing about the stored keys.

Each configured key is a tenant of its own (``key-<first 16 hex digits of its digest>``) unless its
entry names one (``tenant=key``); a minted key names its tenant.  With no key at all (no tenant keys,
no admin key, no minted key in the store: see arrwdb/engine/auth_policy.py), everyone is the tenant
"default" (allowed only on a loopback host: ``arrwdb serve`` refuses otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from arrwdb.engine import auth_policy
from arrwdb.engine.auth_policy import tenant_keys
from arrwdb.errors import Unauthorized
from arrwdb.runtime.ratelimit import RATE_KEY, RateLimiter

if TYPE_CHECKING:
    from arrwdb.engine.api import EngineAPI

DEFAULT_TENANT = auth_policy.DEFAULT_TENANT


def digest(key: str) -> bytes:
    # surrogatepass: any str hashes (one holding a lone surrogate matches nothing) instead of raising.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def configured_tenant(key: str) -> str:
    return "key-" + digest(key).hex()[:16]


@dataclass(frozen=True)
class Identity:
    """Who is calling: the tenant, and which key (its digest) so limits can be per key."""

    tenant: str
    key_digest: bytes | None


class KeyRing:
    def __init__(self, keys: list[str], admin_key: str = "", enabled: bool | None = None) -> None:
        # digest -> (digest, tenant): the stored digest is what the presented one is compared with.
        # "tenant=key" entries name their tenant; a plain key is a tenant of its own (auth_policy.py).
        self._entries: dict[bytes, tuple[bytes, str]] = {
            digest(k): (digest(k), t) for t, k in tenant_keys(keys, configured_tenant)
        }
        self._minted: dict[str, bytes] = {}  # key id -> digest, to revoke by id
        self._admin = digest(admin_key) if admin_key else None
        self.enabled = bool(keys or admin_key) if enabled is None else enabled

    # -- minted keys (changed on the event loop, after the store committed) -----------------------

    def add_minted(self, key_id: str, key_digest: bytes, tenant: str) -> None:
        self._entries[key_digest] = (key_digest, tenant)
        self._minted[key_id] = key_digest

    def replace_minted(self, records: list[dict[str, object]]) -> None:
        """Every minted key the store holds, in place of those the ring had (revoked ones left out)."""
        for key_digest in self._minted.values():
            self._entries.pop(key_digest, None)
        self._minted.clear()
        for record in records:
            if record["revoked_at"] is None:
                self.add_minted(str(record["id"]), bytes.fromhex(str(record["digest"])), str(record["tenant"]))

    def revoke_minted(self, key_id: str) -> None:
        key_digest = self._minted.pop(key_id, None)
        if key_digest is not None:
            self._entries.pop(key_digest, None)

    # -- checks ------------------------------------------------------------------------------------

    def identify(self, key: str | None) -> Identity:
        if not self.enabled:
            return Identity(DEFAULT_TENANT, None)
        if not key:
            raise Unauthorized("an API key is required (X-API-Key or Authorization: Bearer)")
        presented = digest(key)
        entry = self._entries.get(presented)
        if entry is None or not hmac.compare_digest(presented, entry[0]):
            raise Unauthorized("the API key is not valid")
        return Identity(entry[1], presented)

    def tenant_of(self, key: str | None) -> str:
        return self.identify(key).tenant

    def check_admin(self, key: str | None) -> None:
        if self._admin is None:
            raise Unauthorized("the admin endpoints are off: set ARRWDB_ADMIN_KEY to use them")
        if not key or not hmac.compare_digest(digest(key), self._admin):
            raise Unauthorized("the admin key is missing or not valid")


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class MintedKeySync:
    """Keeps an HTTP worker's key ring in step with the minted keys in the store, which another worker
    may have changed: ``version`` reads a number the engine raises after every minted or revoked key
    (``arrwdb.ipc.board``), and the ring is reloaded before the next key is checked."""

    def __init__(self, keyring: KeyRing, api: EngineAPI, version: Callable[[], int]) -> None:
        self.keyring = keyring
        self.api = api
        self.version = version
        self.seen = -1
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        if self.version() == self.seen:
            return
        async with self._lock:
            version = self.version()
            if version != self.seen:
                self.keyring.replace_minted(await self.api.api_keys(None))
                self.seen = version


async def tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant (async: a plain def would cost a thread-pool hop).

    Applies the per-key rate limit too, so every tenant route (the fast paths included) is covered:
    here, or in the engine process when it keeps the server's one limit (``remote_rate_limit``).
    """
    state = request.app.state
    keyring: KeyRing = state.keyring
    sync: MintedKeySync | None = state.key_sync
    if sync is not None and keyring.enabled:
        await sync.refresh()
    identity = keyring.identify(presented_key(request))
    limiter: RateLimiter | None = state.rate_limiter
    if limiter is not None or state.remote_rate_limit:
        client = request.client.host if request.client else ""
        rate_key = identity.key_digest or client.encode()
        if limiter is not None:
            limiter.take(rate_key)
        else:
            RATE_KEY.set(rate_key)
    return identity.tenant


async def admin(request: Request) -> None:
    """FastAPI dependency of the admin routes: the admin key, and nothing else, opens them."""
    request.app.state.keyring.check_admin(presented_key(request))
