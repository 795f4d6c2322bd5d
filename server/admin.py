"""Admin routes: mint, list and revoke tenant API keys (``ARRWDB_ADMIN_KEY`` opens them).

A minted key is persisted (as its SHA-256 digest only) before it is answered, and put in the live key
ring at once: it works on the next request, and a revoked key fails on the next request.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from arrwdb.engine.api import key_record_body
from arrwdb.library.validation import check_name
from arrwdb.server.auth import KeyRing, admin, digest
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of
from arrwdb.server.responses import JSON
from arrwdb.server.schemas import Strict
from arrwdb.store.api_keys import ApiKeyRecord, new_api_key_record

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)])

KEY_PREFIX = "arrwdb_"
_SHOWN_CHARS = len(KEY_PREFIX) + 4  # listed with each key so people can tell keys apart


class ApiKeyCreate(Strict):
    tenant: str = Field(description="The tenant the key acts as: 1 to 256 characters of [A-Za-z0-9._:-].")
    name: str = Field("", max_length=256, description="A label for people (who holds the key, what for).")


class ApiKey(BaseModel):
    id: str
    tenant: str
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key itself: shown this once, never stored.")


class ApiKeyList(BaseModel):
    keys: list[ApiKey]


REQUEST_MODELS: tuple[type[BaseModel], ...] = (ApiKeyCreate,)


def key_body(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "tenant": record.tenant,
        "name": record.name,
        "prefix": record.prefix,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    }


def keyring_of(request: Request) -> KeyRing:
    return request.app.state.keyring  # type: ignore[no-any-return]


@router.post(
    "/keys", status_code=201, responses={201: {"model": ApiKeyCreated}}, openapi_extra=openapi_body(ApiKeyCreate)
)
async def create_key(request: Request) -> Response:
    body = await parse_body(request, ApiKeyCreate)
    tenant = check_name(body.tenant, "tenant")
    key = KEY_PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    key_digest = digest(key)
    record = new_api_key_record(uuid.uuid4().hex, tenant, body.name, key_digest.hex(), key[:_SHOWN_CHARS])
    await api_of(request).create_api_key(key_record_body(record))
    keyring_of(request).add_minted(record.id, key_digest, tenant)
    return JSON({**key_body(record), "key": key}, status_code=201)


@router.get("/keys", responses={200: {"model": ApiKeyList}})
async def list_keys(
    request: Request,
    tenant: str | None = Query(None, description="Only this tenant's keys."),
    include_revoked: bool = Query(True, description="List revoked keys too (with revoked_at)."),
) -> Response:
    records = [ApiKeyRecord(**fields) for fields in await api_of(request).api_keys(tenant)]
    return JSON({"keys": [key_body(r) for r in records if include_revoked or r.revoked_at is None]})


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, request: Request) -> Response:
    # Out of the live ring first: a leaked key stops working even if the store then fails (the admin
    # gets that error and retries; until a restart the key stays refused either way).
    keyring_of(request).revoke_minted(key_id)
    await api_of(request).revoke_api_key(key_id)
    return Response(status_code=204)
