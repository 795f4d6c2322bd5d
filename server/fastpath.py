"""The hot routes (search, batch search, embed, inserts) served ahead of the framework's own layers.

Profiled under 64 closed-loop clients of single vector queries (py-spy, 2 cores), a third of the
event loop's busy time on a search request went to layers between uvicorn and the route handler:
FastAPI's telemetry check, Starlette's ServerErrorMiddleware and ExceptionMiddleware, FastAPI's
body-limit and exit-stack middlewares, the router's matching and the ``request_response`` wrappers.
With 64 clients in one batch that time is spent while the device waits for the next batch.  The hot
routes parse and validate their own bodies and use no dependency injection, so ``ArrwdbApp`` sends
them straight through arrwdb's own middlewares (the same ones, in the same order, as every other
route: metrics, admission, body limit, and CORS when configured) to the handler, and renders an
error with the app's own exception handlers, so answers are byte for byte those of the full stack.
The FastAPI routes stay registered: they give the OpenAPI schema.  FastAPI's native OpenTelemetry
spans do not cover the hot routes; arrwdb's Prometheus metrics do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from arrwdb.server import documents, openai_api, search
from arrwdb.server.auth import tenant
from arrwdb.server.hot_routes import (
    DOCUMENTS,
    DOCUMENTS_BATCH,
    EMBED,
    EMBEDDINGS,
    SEARCH,
    SEARCH_BATCH,
    match_hot_route,
)

Endpoint = Callable[[Request, str], Awaitable[Response]]  # (request, library)
LibraryHandler = Callable[[str, Request, str], Awaitable[Response]]  # a route's (library, request, tenant)
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def _library_endpoint(handler: LibraryHandler) -> Endpoint:
    async def endpoint(request: Request, library: str) -> Response:
        return await handler(library, request, await tenant(request))

    return endpoint


async def _embed(request: Request, library: str) -> Response:
    return await search.embed(request, await tenant(request))


async def _embeddings(request: Request, library: str) -> Response:
    return await openai_api.embeddings(request)  # authenticates itself: its errors carry OpenAI's keys


_ENDPOINTS: dict[str, Endpoint] = {
    SEARCH: _library_endpoint(search.search),
    SEARCH_BATCH: _library_endpoint(search.search_batch),
    EMBED: _embed,
    EMBEDDINGS: _embeddings,
    DOCUMENTS: _library_endpoint(documents.add_document),
    DOCUMENTS_BATCH: _library_endpoint(documents.add_documents),
}


class _HotEndpoint:
    """The innermost layer of the hot path: the handler, and the app's exception handlers for what
    it raises (looked up along the exception's class hierarchy, as Starlette does)."""

    def __init__(self, handlers: dict[Any, ExceptionHandler]) -> None:
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await _ENDPOINTS[scope["route"].path](request, scope["path_params"]["library"])
        except Exception as exc:
            response = await self._handler_for(exc)(request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        raise exc  # no handler, not even for Exception: uvicorn answers 500, as it would behind Starlette


class ArrwdbApp(FastAPI):
    """FastAPI, with the hot routes taken before its middleware stack (see the module's docstring)."""

    hot_path: ASGIApp | None = None  # set by ``install_hot_path`` once the middlewares are known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot_path is not None and scope["type"] == "http" and scope["method"] == "POST":
            match = match_hot_route(scope["path"])
            if match is not None:
                scope["app"] = self  # request.app, as Starlette sets it
                scope["route"] = match.label
                scope["path_params"] = {"library": match.library}
                await self.hot_path(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def install_hot_path(app: ArrwdbApp, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """``wrap`` puts the app's own middlewares around an ASGI app (the same call that adds them to
    ``app``), so the hot path and every other route pass through the same layers."""
    app.hot_path = wrap(_HotEndpoint(app.exception_handlers))
