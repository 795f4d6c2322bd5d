"""Plain Starlette routes in front of the hottest FastAPI routes.

FastAPI's per-request machinery (dependency solving, parameter introspection) costs a noticeable
share of a small search request's CPU.  The hot endpoints parse and validate their bodies themselves
already, so the same handler functions are mounted a second time as plain Starlette routes placed
first in the router: they answer the requests, while the FastAPI routes behind them keep the OpenAPI
schema (and would serve if these were removed).  Errors go through the same app exception handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Scope

from arrwdb.server import search
from arrwdb.server.auth import tenant

LibraryHandler = Callable[[str, Request, str], Awaitable[Response]]


class _FastRoute(Route):
    """Records itself in the scope, as FastAPI's routes do, so metrics label it by its template."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _library_route(path: str, handler: LibraryHandler) -> Route:
    async def endpoint(request: Request) -> Response:
        # While the queues are full these requests never get here: server/admission.py refuses them.
        return await handler(request.path_params["library"], request, await tenant(request))

    return _FastRoute(path, endpoint, methods=["POST"], include_in_schema=False)


def _embed_route() -> Route:
    async def endpoint(request: Request) -> Response:
        return await search.embed(request, await tenant(request))

    return _FastRoute("/v1/embed", endpoint, methods=["POST"], include_in_schema=False)


def install_fast_routes(app: FastAPI) -> None:
    routes = [
        _library_route("/v1/libraries/{library}/search", search.search),
        _library_route("/v1/libraries/{library}/search/batch", search.search_batch),
        _embed_route(),
    ]
    app.router.routes[0:0] = routes
