"""Small request helpers shared by the route modules."""

from __future__ import annotations

from fastapi import Request

from arrwdb.engine import Engine
from arrwdb.errors import BadRequest

TIMEOUT_HEADER = "x-request-timeout-ms"


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def deadline_of(request: Request) -> float:
    """The request's deadline: the server's timeout, or less if the client asks for less."""
    engine = engine_of(request)
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return engine.deadline()
    try:
        asked = float(raw)
    except ValueError:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a number of milliseconds") from None
    if not asked > 0 or asked != asked:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a positive number of milliseconds")
    return engine.deadline(asked)
