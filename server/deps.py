"""Small request helpers shared by the route modules."""

from __future__ import annotations

import time

from fastapi import Request

from arrwdb.config import Settings
from arrwdb.engine.api import EngineAPI
from arrwdb.errors import BadRequest

TIMEOUT_HEADER = "x-request-timeout-ms"


def api_of(request: Request) -> EngineAPI:
    """The engine this HTTP server talks to: in this process, or in the engine process."""
    return request.app.state.api  # type: ignore[no-any-return]


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def deadline_of(request: Request) -> float:
    """The request's deadline (time.monotonic): the server's timeout, or less if the client asks for less."""
    limit = settings_of(request).request_timeout_ms
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return time.monotonic() + limit / 1000.0
    try:
        asked = float(raw)
    except ValueError:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a number of milliseconds") from None
    if not asked > 0 or asked != asked:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a positive number of milliseconds")
    return time.monotonic() + min(asked, limit) / 1000.0
