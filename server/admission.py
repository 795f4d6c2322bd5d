"""Load shedding at the door: while the scheduler's queues are full, the hot routes (search, batch
search, embed) are answered 429 by a plain ASGI layer, before routing, authentication and the body.

At twice the load the server can serve, half the requests are refused.  Refused through the whole
FastAPI stack (routing, dependencies, the exception handlers) each cost ~0.25 ms of the one event
loop, which then fell behind the offered load: refusals waited behind admitted requests (p99 0.1-0.3 s
instead of a few ms) and admitted ones behind refusals.  Here a refusal is one queue-length check and
one small response: the API's 429 (error body, ``Retry-After``), rendered by ``server/errors.py`` as
every error is.  It is counted as ``rejected_queue_full`` and labelled with its route in the HTTP
metrics like any other answer.  An unauthenticated request is refused too while overloaded: the 429
says nothing about the library.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from arrwdb.scheduler import Scheduler
from arrwdb.server.errors import arrwdb_error_response
from arrwdb.server.hot_routes import match_hot_route


class AdmissionGate:
    def __init__(self, app: ASGIApp, scheduler_of: Callable[[], Scheduler | None]) -> None:
        self.app = app
        self.scheduler_of = scheduler_of  # None until start-up made one

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            scheduler = self.scheduler_of()
            if scheduler is not None and scheduler.full:
                match = match_hot_route(scope["path"])
                if match is not None and match.guarded:
                    scope["route"] = match.label
                    await arrwdb_error_response(scheduler.refuse())(scope, receive, send)
                    return
        await self.app(scope, receive, send)
