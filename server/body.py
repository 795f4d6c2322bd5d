"""Request bodies: read raw bytes and validate with pydantic's Rust JSON parser (5x faster than
json.loads + validation on large bodies); large bodies are parsed off the event loop.  The models are
declared in the OpenAPI schema through ``openapi_body``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from arrwdb.errors import RequestTimeout
from arrwdb.server.deps import deadline_of
from arrwdb.server.disconnect import ClientDisconnected
from arrwdb.server.errors import validation_error

M = TypeVar("M", bound=BaseModel)

# pydantic holds the GIL while it parses, so a thread only frees the event loop for a body whose parse
# outlasts the interpreter's switch interval; below that the hand-off to the thread and back costs
# more than the parse it moves.
_INLINE_PARSE_BYTES = 4 * 1024 * 1024


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await read_body(request)
    try:
        if len(raw) <= _INLINE_PARSE_BYTES:
            return model.model_validate_json(raw)
        return await asyncio.to_thread(model.model_validate_json, raw)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def read_body(request: Request) -> bytes:
    """The raw body, within the request's deadline: a client that trickles its upload (slowloris on
    the body) must not hold a connection and a task forever.  A timer, not a task, enforces it."""
    remaining = deadline_of(request) - time.monotonic()
    try:
        async with asyncio.timeout(max(remaining, 0.0)):
            return await request.body()
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive before the request's deadline") from None
    except ClientDisconnect:
        raise ClientDisconnected from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }
