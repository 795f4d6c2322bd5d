"""The one place where errors become HTTP responses with the API.md body
``{"error": {"type": ..., "message": ...}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from arrwdb.errors import ArrwdbError, BadRequest, InvalidInput, PartialWrite
from arrwdb.server.disconnect import ClientDisconnected
from arrwdb.server.hot_routes import EMBEDDINGS
from arrwdb.server.responses import JSON

log = logging.getLogger("arrwdb.server")

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSON({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def arrwdb_error_response(exc: ArrwdbError, openai: bool = False) -> Response:
    """The error's answer; ``openai``: with OpenAI's ``param`` (the field at fault, or null) and ``code``
    (the error's type) added inside ``error``, as /v1/embeddings answers every error."""
    retry_after = getattr(exc, "retry_after_s", None)  # Overloaded, ShardUnavailable
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if isinstance(exc, PartialWrite):
        error = {"type": exc.type, "message": exc.message, "written": exc.written, "unknown": exc.unknown}
        return JSON({"error": error}, status_code=exc.status, headers=headers)
    if not openai:
        return error_response(exc.status, exc.type, exc.message, headers)
    error = {"type": exc.type, "message": exc.message, "param": exc.param, "code": exc.type}
    return JSON({"error": error}, status_code=exc.status, headers=headers)


def openai_shaped(path: str) -> bool:
    """Whether errors on ``path`` carry OpenAI's keys (refusals at the door and the body limit too)."""
    return path == EMBEDDINGS


# Where FastAPI says a request parameter came from (the first part of its error location).
_PARAMETER_SOURCES = frozenset({"query", "path", "header", "cookie", "body"})


def error_path(location: tuple[object, ...]) -> str:
    """A location as the path every message uses (arrwdb.library.validation.field_path's style): fields
    joined by dots, list positions in brackets: ``queries[0].k``, ``documents[2].metadata``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def describe_validation_errors(errors: list[dict], parameters: bool = False) -> str:  # type: ignore[type-arg]
    """``parameters``: the errors are FastAPI's, about request parameters, whose locations start with
    their source ("query", "path"); a parameter is then named by itself (``limit``), as a body field
    is by its path in the body (``k``)."""
    parts = []
    for error in errors[:3]:
        location = tuple(error.get("loc", ()))
        if parameters and location and location[0] in _PARAMETER_SOURCES:
            location = location[1:]
        path = error_path(location)
        message = error.get("msg", "invalid value")
        parts.append(f"{path}: {message}" if path else message)
    more = len(errors) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def validation_error(exc: ValidationError) -> ArrwdbError:
    """Map a pydantic error from parsing a body: malformed JSON is 400, a wrong shape 422."""
    errors = exc.errors(include_url=False)
    if any(error.get("type") == "json_invalid" for error in errors):
        return BadRequest("the body is not valid JSON")
    return InvalidInput(describe_validation_errors(errors))  # type: ignore[arg-type]


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path is served with.  The router answers a 405 with the methods of
    the first route whose path matched (POST alone for /v1/libraries, which GET serves too); the
    Allow header must list those of them all."""
    path = request.scope["path"]
    matching = [route for route in _routes(request.app.router.routes) if route.methods and route.path_regex.match(path)]
    # A path with fewer templated segments is matched first, as OpenAPI reads paths: .../documents/batch
    # is the bulk route's, not a document's (server/documents.py RESERVED_IDS).
    fewest = min((route.path.count("{") for route in matching), default=0)
    return sorted({method for route in matching if route.path.count("{") == fewest for method in route.methods})


def _routes(routes: list[BaseRoute]) -> list[Route]:
    """The app's routes, those of the routers it includes among them (FastAPI keeps an included
    router as one entry that holds it)."""
    found: list[Route] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _routes(included.routes)
        elif isinstance(route, Route):
            found.append(route)
    return found


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ArrwdbError)
    async def _arrwdb(request: Request, exc: ArrwdbError) -> Response:
        return arrwdb_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid_input", describe_validation_errors(list(exc.errors()), parameters=True))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        type_ = _HTTP_TYPES.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, type_, str(exc.detail), headers)

    @app.exception_handler(ClientDisconnected)
    async def _gone(request: Request, exc: ClientDisconnected) -> Response:
        # Nobody reads this answer; 499 (nginx's "client closed request") keeps it out of the 5xx counts.
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")
