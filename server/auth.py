"""API keys and tenants.

Keys are kept only as SHA-256 digests and compared with ``hmac.compare_digest`` (constant time).
Each configured key is a tenant of its own; with no keys configured, everyone is the tenant
"default" (allowed only on a loopback host: ``arrwdb serve`` refuses otherwise).
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from arrwdb.errors import Unauthorized

DEFAULT_TENANT = "default"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [(_digest(key), "key-" + _digest(key).hex()[:16]) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def tenant_of(self, key: str | None) -> str:
        if not self._digests:
            return DEFAULT_TENANT
        if not key:
            raise Unauthorized("an API key is required (X-API-Key or Authorization: Bearer)")
        presented = _digest(key)
        tenant = None
        for digest, name in self._digests:  # check every key: the time taken does not reveal which
            if hmac.compare_digest(presented, digest):
                tenant = name
        if tenant is None:
            raise Unauthorized("the API key is not valid")
        return tenant


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant (async: a plain def would cost a thread-pool hop)."""
    keyring: KeyRing = request.app.state.keyring
    return keyring.tenant_of(presented_key(request))
