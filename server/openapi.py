"""The OpenAPI document of a running server (``GET /openapi.json``): every route with every status it
can answer, the API.md error body on each error, the request bodies with their rules
(``server/openapi_rules.py``), and what depends on the running configuration: whether a key is needed
(the security scheme), the model ids, whether the rate limit can refuse, whether ``/v1/rerank``
and (under ``--ray``) the replica routes exist.

Which errors a route can answer is declared here, in ``ROUTE_ERRORS``, from what its handler and the
engine behind it raise (``arrwdb/errors.py``); a route missing from the table stops the schema from
being built, so a new route cannot go out undocumented.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.responses import Response

from arrwdb.config import DEFAULT_MODEL_NAME, Settings
from arrwdb.errors import ArrwdbError
from arrwdb.server import json_schema, openapi_rules
from arrwdb.server.openapi_rules import Model
from arrwdb.server.responses import JSON

Schema = dict[str, Any]
OPENAPI_PATH = "/openapi.json"

# What each error status means (API.md, "Errors"); each response also names the types it carries.
STATUSES: dict[int, str] = {
    400: "The body is not valid JSON, or a cursor or X-Request-Timeout-Ms is malformed.",
    401: "The key is missing or not valid.",
    404: "Not found.",
    405: "The path is a bulk route's (documents/batch, documents/delete): no document has that id.",
    408: "The body did not arrive before the request's deadline.",
    409: "A library of that name already exists for this tenant.",
    413: "The body is larger than ARRWDB_MAX_REQUEST_BYTES.",
    422: "A value is not acceptable; the message names the field.",
    429: "Refused for now: retry after Retry-After seconds.",
    500: "The device batch failed, or an unexpected error (see the server log).",
    503: "Not ready (starting, stopping, or the engine process restarting), or a write's outcome unknown.",
    504: "The request's deadline passed before it was answered.",
    507: "The store could not make the write durable.",
}

# The errors of each route besides those every route of its kind answers (see ``_statuses``):
# "engine": the engine may not be ready (503) or, with HTTP worker processes, not answer in time (504);
# "body": a JSON body (400, 408, 413, 422); "query": validated query parameters (422); "library" and
# "key": a 404 of the path; "model": a 404 model_not_found; "queue": the device queues' refusal (429
# overloaded), deadline (504) and failed batch (500); "write": not made durable (507) or, with HTTP
# worker processes, an outcome unknown (503); "timed": the timing headers on the answer; "reserved": a
# document id that names a bulk route (405).
ROUTE_ERRORS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/health"): frozenset(),
    ("GET", "/ready"): frozenset({"not_ready"}),
    ("GET", "/metrics"): frozenset({"engine"}),
    ("GET", "/v1/cluster"): frozenset({"engine"}),
    ("POST", "/v1/libraries"): frozenset({"engine", "body", "model", "conflict", "write"}),
    ("GET", "/v1/libraries"): frozenset({"engine"}),
    ("GET", "/v1/libraries/{library}"): frozenset({"engine", "library"}),
    ("DELETE", "/v1/libraries/{library}"): frozenset({"engine", "library", "write"}),
    ("GET", "/v1/libraries/{library}/statistics"): frozenset({"engine", "library"}),
    ("POST", "/v1/libraries/{library}/shards/{shard}/replicas"): frozenset(
        {"engine", "body", "library", "query", "conflict", "write"}
    ),
    ("DELETE", "/v1/libraries/{library}/shards/{shard}/replicas/{engine}"): frozenset(
        {"engine", "library", "query", "conflict", "write"}
    ),
    ("POST", "/v1/libraries/{library}/documents"): frozenset({"engine", "body", "library", "queue", "write"}),
    ("POST", "/v1/libraries/{library}/documents/batch"): frozenset({"engine", "body", "library", "queue", "write"}),
    ("GET", "/v1/libraries/{library}/documents"): frozenset({"engine", "library", "query", "cursor"}),
    ("GET", "/v1/libraries/{library}/documents/{doc_id}"): frozenset({"reserved", "engine", "library"}),
    ("PATCH", "/v1/libraries/{library}/documents/{doc_id}"): frozenset(
        {"reserved", "engine", "body", "library", "write"}
    ),
    ("DELETE", "/v1/libraries/{library}/documents/{doc_id}"): frozenset({"reserved", "engine", "library", "write"}),
    ("POST", "/v1/libraries/{library}/documents/delete"): frozenset({"engine", "body", "library", "write"}),
    ("POST", "/v1/libraries/{library}/search"): frozenset({"engine", "body", "library", "queue", "model", "timed"}),
    ("POST", "/v1/libraries/{library}/search/batch"): frozenset(
        {"engine", "body", "library", "queue", "model", "timed"}
    ),
    ("POST", "/v1/embed"): frozenset({"engine", "body", "queue", "model", "timed"}),
    ("POST", "/v1/embeddings"): frozenset({"engine", "body", "queue", "model", "timed"}),
    ("GET", "/v1/models"): frozenset({"engine"}),
    ("GET", "/v1/models/{model}"): frozenset({"engine", "model"}),
    ("POST", "/v1/rerank"): frozenset({"engine", "body", "queue", "model", "timed"}),
    ("POST", "/v1/admin/keys"): frozenset({"engine", "body", "write"}),
    ("GET", "/v1/admin/keys"): frozenset({"engine", "query"}),
    ("DELETE", "/v1/admin/keys/{key_id}"): frozenset({"engine", "key", "write"}),
    ("POST", "/debug/memory/snapshot"): frozenset({"query"}),
}

# The two ways to send a key (server/auth.py presented_key), for a tenant key and for the admin key;
# /docs's Authorize button offers them all.
SECURITY_SCHEMES: dict[str, Any] = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A tenant key: one of ARRWDB_API_KEYS or one minted through /v1/admin/keys.",
    },
    "Bearer": {"type": "http", "scheme": "bearer", "description": "A tenant key as Authorization: Bearer <key>."},
    "AdminKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The admin key (ARRWDB_ADMIN_KEY), for /v1/admin only.",
    },
    "AdminBearer": {"type": "http", "scheme": "bearer", "description": "The admin key as Authorization: Bearer."},
}
SECURITY = [{"ApiKey": []}, {"Bearer": []}]
ADMIN_SECURITY = [{"AdminKey": []}, {"AdminBearer": []}]

# Headers of the answers of search, embedding and rerank ("timed": server/responses.py timing_headers).
TIMING_HEADERS: dict[str, Any] = {
    "X-Queue-Ms": ("Milliseconds the request waited for the device.", {"type": "string", "pattern": "^[0-9.]+$"}),
    "X-Compute-Ms": ("Milliseconds of the device batch that served it.", {"type": "string", "pattern": "^[0-9.]+$"}),
    "X-Batch-Size": (
        "Items in that batch; 0 when every answer came from a cache.",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
}
RETRY_AFTER = {
    "description": "Seconds to wait before retrying (at least 1).",
    "required": True,
    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
}


def install(app: FastAPI, request_models: tuple[type[BaseModel], ...], max_inputs: int) -> None:
    """Serve ``/openapi.json`` from ``build``, with the models' dimensions and vocabularies once the
    engine has loaded them (then kept: they do not change while the server runs); ``app.openapi()``
    gives the schema from the settings alone, for tools that do not start the server."""
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) != OPENAPI_PATH]

    def from_settings() -> Schema:
        return app.openapi_schema or build(app, request_models, max_inputs, None)

    @app.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi_json(request: Request) -> Response:
        if app.openapi_schema is None:
            try:
                loaded = await request.app.state.api.models()
            except ArrwdbError:  # not ready: the settings' model ids, without what loading tells
                return JSON(build(app, request_models, max_inputs, None))
            app.openapi_schema = build(app, request_models, max_inputs, loaded)
        return JSON(app.openapi_schema)

    app.openapi = from_settings  # type: ignore[method-assign]


def model_facts(settings: Settings, loaded: list[dict[str, Any]] | None) -> tuple[list[Model], list[str]]:
    """The embedding models and the rerankers' ids: as the engine describes them once loaded, else
    as the settings name them (the packaged model, ARRWDB_MODELS, ARRWDB_RERANK_MODEL)."""
    if loaded is None:
        rerank = settings.rerank_model_path()
        names = [DEFAULT_MODEL_NAME, *settings.model_paths()]
        return [Model(name, name == DEFAULT_MODEL_NAME) for name in names], [] if rerank is None else [rerank[0]]
    models = [
        Model(m["id"], bool(m["default"]), m.get("dimension"), m.get("vocab_size"), bool(m.get("matryoshka")))
        for m in loaded
        if m.get("kind", "embedding") == "embedding"
    ]
    return models, [m["id"] for m in loaded if m.get("kind") == "rerank"]


def build(
    app: FastAPI, request_models: tuple[type[BaseModel], ...], max_inputs: int, loaded: list[dict[str, Any]] | None
) -> Schema:
    """The document for ``app`` as it runs now: its settings, whether auth is on, and its models as
    ``GET /v1/models`` lists them (``loaded``; None before they are loaded)."""
    settings: Settings = app.state.settings
    auth = bool(app.state.keyring.enabled)
    models, rerankers = model_facts(settings, loaded)
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for model in request_models:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = model_schema
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, which arrwdb never sends
        components.pop(name, None)
    openapi_rules.apply(components, models, rerankers, max_inputs, clustered=bool(settings.ray_address))
    components.update(_error_components())
    if not rerankers:
        document["paths"].pop("/v1/rerank", None)
    if not settings.ray_address:  # one engine holds one copy of each library: no replicas to add or remove
        for path in [path for path in document["paths"] if "/replicas" in path]:
            document["paths"].pop(path)
    limited = settings.rate_limit_per_s > 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            kinds = ROUTE_ERRORS[(method.upper(), path)]
            operation["responses"] = _responses(operation["responses"], path, kinds, auth, limited)
            if path.startswith("/v1/admin/"):
                operation["security"] = ADMIN_SECURITY
            elif path.startswith("/v1/") or path.startswith("/debug/"):
                if auth:
                    operation["security"] = SECURITY
    document["paths"]["/metrics"]["get"]["responses"]["200"]["content"] = {
        "text/plain": {"schema": {"type": "string", "description": "Prometheus text exposition format."}}
    }
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    return document


def _statuses(path: str, kinds: frozenset[str], auth: bool, limited: bool) -> dict[int, tuple[str, ...]]:
    """Each error status the route can answer, with the error types it carries there."""
    statuses: dict[int, set[str]] = {500: {"internal_error"}}
    tenant_route = path.startswith("/v1/") and not path.startswith("/v1/admin/")

    def add(status: int, *types: str) -> None:
        statuses.setdefault(status, set()).update(types)

    if path.startswith("/v1/admin/"):
        add(401, "unauthorized")  # always: no admin key configured is a 401 too
    elif auth and (tenant_route or path.startswith("/debug/")):
        add(401, "unauthorized")
    if limited and tenant_route:
        add(429, "rate_limited")
    if "not_ready" in kinds or "engine" in kinds:
        add(503, "not_ready")
    if "engine" in kinds:
        add(504, "deadline_exceeded")  # with HTTP worker processes, the engine's answer is awaited within it
    if "body" in kinds:
        add(400, "bad_request")
        add(408, "request_timeout")
        add(413, "payload_too_large")
        add(422, "invalid_input")
    if "query" in kinds:
        add(422, "invalid_input")
    if "cursor" in kinds:
        add(400, "bad_request")
    if "library" in kinds or "key" in kinds:
        add(404, "not_found")
    if "model" in kinds:
        add(404, "model_not_found")
    if "reserved" in kinds:
        add(405, "method_not_allowed")
    if "conflict" in kinds:
        add(409, "conflict")
    if "queue" in kinds:
        add(429, "overloaded")
        add(504, "deadline_exceeded")
        add(500, "worker_failure")
        add(400, "bad_request")  # a malformed X-Request-Timeout-Ms
    if "write" in kinds:
        add(507, "storage_failure")
        add(503, "outcome_unknown")
    return {status: tuple(sorted(types)) for status, types in sorted(statuses.items())}


def _responses(generated: Schema, path: str, kinds: frozenset[str], auth: bool, limited: bool) -> Schema:
    responses: Schema = {status: answer for status, answer in generated.items() if status.startswith("2")}
    for status, answer in responses.items():
        if status == "204":
            answer.pop("content", None)
        elif "timed" in kinds:
            answer["headers"] = {
                name: {"description": description, "required": True, "schema": schema}
                for name, (description, schema) in TIMING_HEADERS.items()
            }
    body = "OpenAIErrorBody" if path == "/v1/embeddings" else "ErrorBody"
    for status, types in _statuses(path, kinds, auth, limited).items():
        answer = {
            "description": f"{STATUSES[status]} Error types: {', '.join(types)}.",
            "content": {"application/json": {"schema": json_schema.ref(body)}},
        }
        if status == 429:
            answer["headers"] = {"Retry-After": RETRY_AFTER}
        responses[str(status)] = answer
    return responses


def _error_components() -> dict[str, Schema]:
    detail = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "description": "Stable, for programs (API.md, Errors)."},
            "message": {"type": "string", "description": "For people; names the field at fault by its path."},
        },
        "required": ["type", "message"],
    }
    openai_detail = {
        "type": "object",
        "properties": {
            **detail["properties"],
            "param": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "The field at fault."},
            "code": {"type": "string", "description": "The error's type again, as OpenAI's clients read it."},
        },
        "required": ["type", "message", "param", "code"],
    }
    return {
        "ErrorDetail": detail,
        "ErrorBody": {
            "type": "object",
            "properties": {"error": json_schema.ref("ErrorDetail")},
            "required": ["error"],
            "description": 'Every error answer: {"error": {"type": ..., "message": ...}}.',
        },
        "OpenAIErrorDetail": openai_detail,
        "OpenAIErrorBody": {
            "type": "object",
            "properties": {"error": json_schema.ref("OpenAIErrorDetail")},
            "required": ["error"],
            "description": "/v1/embeddings's errors: the error body with OpenAI's param and code added.",
        },
    }
