"""Routes in OpenAI's shapes: ``POST /v1/embeddings`` and ``GET /v1/models`` (``/v1/models/{id}``).

``/v1/embeddings`` is a hot route (server/fastpath.py): it takes the same way and the same batching
queue as ``/v1/embed``.  Its errors keep arrwdb's envelope and add OpenAI's ``param`` (the field at
fault, or null) and ``code`` (the error's type) inside ``error``, so OpenAI's clients raise their
usual exceptions with a useful message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pybase64
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from arrwdb.errors import ArrwdbError, InvalidInput, UnknownModel
from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, read_body
from arrwdb.server.deps import api_of, deadline_of
from arrwdb.server.disconnect import unless_disconnected
from arrwdb.server.errors import arrwdb_error_response, validation_error
from arrwdb.server.responses import JSON, timing_headers

router = APIRouter(tags=["models"])

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
_MAX_TOKEN_ID = 2**31  # token ids must fit the engine protocol's integers; the model's vocabulary checks the rest
_INPUT_SHAPES = "a string, a list of strings, a list of token ids, or a list of lists of token ids"


def _token_ids(value: Any) -> list[int] | None:
    """``value`` as a list of token ids, or None if it is not one (2.0 is the id 2: JSON has one
    number type)."""
    if not isinstance(value, list) or not value:
        return None
    ids = [int(token) if type(token) is float and token.is_integer() else token for token in value]
    if all(type(token) is int and 0 <= token < _MAX_TOKEN_ID for token in ids):
        return ids
    return None


def embedding_inputs(raw: Any) -> list[str | list[int]]:
    """OpenAI's ``input`` as a list of items, each a text or a list of token ids."""
    items: list[Any] | None = None
    single = _token_ids(raw)
    if isinstance(raw, str):
        items = [raw]
    elif single is not None:
        items = [single]
    elif isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            items = raw
        else:
            lists = [_token_ids(x) for x in raw]
            items = lists if all(ids is not None for ids in lists) else None
    if items is None:
        raise InvalidInput(f"input must be {_INPUT_SHAPES} (non-empty; token ids are integers from 0)", param="input")
    if len(items) > MAX_INPUTS:
        raise InvalidInput(f"input holds {len(items)} items; at most {MAX_INPUTS} are allowed", param="input")
    for i, item in enumerate(items):
        if isinstance(item, str) and not item.strip():
            raise InvalidInput(f"input[{i}] must not be empty", param="input")
    return items


async def _parse(request: Request) -> schemas.EmbeddingsRequest:
    raw = await read_body(request)
    try:
        return schemas.EmbeddingsRequest.model_validate_json(raw)
    except ValidationError as exc:
        error = validation_error(exc)
        location = exc.errors(include_url=False)[0].get("loc", ())
        error.param = str(location[0]) if location else None
        raise error from None


@router.post(
    "/v1/embeddings",
    responses={200: {"model": schemas.EmbeddingsResponse}},
    openapi_extra=openapi_body(schemas.EmbeddingsRequest),
)
async def embeddings(request: Request) -> Response:
    """OpenAI's embeddings call.  Served by the hot path, which calls this with the raw request."""
    try:
        await tenant(request)
        body = await _parse(request)
        inputs = embedding_inputs(body.input)
        work = api_of(request).embeddings(inputs, body.model, deadline_of(request), body.dimensions)
        vectors, tokens, name, timings = await unless_disconnected(request, work, request.app.state.telemetry)
    except ArrwdbError as exc:
        return arrwdb_error_response(exc, openai=True)
    data = [
        {"object": "embedding", "index": i, "embedding": encoded}
        for i, encoded in enumerate(_encoded(vectors, body.encoding_format))
    ]
    answer = {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return JSON(answer, headers=timing_headers(timings.queue_ms, timings.compute_ms, timings.batch_size))


def _encoded(vectors: np.ndarray, encoding_format: str) -> list[Any]:
    """Each row as JSON floats (numpy rows, which orjson writes natively) or as base64 of its
    little-endian float32 bytes, as OpenAI sends them."""
    if encoding_format == "float":
        return list(vectors)
    little = np.ascontiguousarray(vectors, dtype="<f4")
    return [pybase64.b64encode(row.tobytes()).decode("ascii") for row in little]


def _model_body(model: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": model["id"],
        "object": "model",
        "created": model["created"],
        "owned_by": "arrwdb",
        "kind": model.get("kind", "embedding"),
        "dimension": model.get("dimension"),
        "max_tokens": model["max_tokens"],
        "default": model["default"],
        "matryoshka": bool(model.get("matryoshka", False)),
        "memory_bytes": model["memory_bytes"],
    }


@router.get("/v1/models", responses={200: {"model": schemas.ModelList}})
async def list_models(request: Request, tenant: str = Depends(tenant)) -> Response:
    models = await api_of(request).models()
    return JSON({"object": "list", "data": [_model_body(m) for m in models]})


@router.get("/v1/models/{model}", responses={200: {"model": schemas.ModelCard}})
async def get_model(model: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    models = await api_of(request).models()
    for found in models:
        if found["id"] == model:
            return JSON(_model_body(found))
    known = ", ".join(repr(m["id"]) for m in models)
    raise UnknownModel(f"model {model!r} is not served here; the models are {known}", param="model")
