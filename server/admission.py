"""Load shedding at the door: while the scheduler's queues are full, the hot routes (search, batch
search, embed) are answered 429 before routing, authentication and the body.

At twice the load the server can serve, half the requests are refused.  Refused through the whole
FastAPI stack (routing, dependencies, the exception handlers) each cost ~0.25 ms of the one event
loop, which then fell behind the offered load: refusals waited behind admitted requests (p99 0.1-0.3 s
instead of a few ms) and admitted ones behind refusals.  Here a refusal is one queue-length check and
one small response: the API's 429 (error body, ``Retry-After``), rendered by ``server/errors.py`` as
every error is.  It is counted as ``rejected_queue_full`` and labelled with its route in the HTTP
metrics like any other answer.  An unauthenticated request is refused too while overloaded: the 429
says nothing about the library.

``AdmissionDoor`` makes the decision; two places ask it.  The HTTP protocol (``server/protocol.py``)
asks as soon as a request's headers are parsed and writes the refusal there and then, without an ASGI
task: a task waits its turn behind every callback already queued on the event loop, and under overload
that queue holds whole batches of answers (a refusal waited 7-15 ms there at p99).  ``AdmissionGate``, a
plain ASGI layer, asks for the requests the protocol leaves to the app (another HTTP implementation,
a client not reading its answers, CORS, ``Expect: 100-continue``).  The door's answer is final: a
request it lets in holds a place until its items are queued (``arrwdb/runtime/admission.py``), and the gate
hands that ticket to the request's task instead of asking again.

Where the engine runs in its own process, each HTTP worker holds a share of ``ARRWDB_MAX_QUEUE``
(``BoardAdmission``): a request it lets in holds a ticket until its answer is written, and the door
refuses while the worker's tickets fill its share, or while the engine posts on the board
(``arrwdb.ipc.board``) that its queues are full (a batch request weighs its queries there).  The shares
add up to the engine's queue, so what the doors let in is what the engine can hold: the decision at
the door stays final, without a round trip.  The engine still asks its own queues when a request
arrives (a request of many queries may not fit), and answers 429 itself then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from arrwdb.errors import Overloaded
from arrwdb.ipc.board import READY, Board
from arrwdb.runtime.admission import ADMITTED, AdmissionTicket, ReservedPlaces
from arrwdb.server.errors import arrwdb_error_response, openai_shaped
from arrwdb.server.hot_routes import match_hot_route


class Admission(Protocol):
    """What the door asks: the scheduler in this process, or ``BoardAdmission``."""

    @property
    def full(self) -> bool: ...

    def reserve(self) -> AdmissionTicket | None: ...

    def refuse(self) -> Overloaded: ...


class BoardAdmission:
    """An HTTP worker's door: its share of the engine's queue, and the engine's own word on the board."""

    def __init__(self, board: Board, telemetry: Any, share: int) -> None:
        self.board = board
        self.telemetry = telemetry
        self.share = share
        self._places = ReservedPlaces()  # requests let in and not answered yet

    @property
    def full(self) -> bool:
        if self._places.count >= self.share:
            return True
        board = self.board
        return board.queue_full and board.state == READY

    def reserve(self) -> AdmissionTicket:
        return AdmissionTicket(self._places)  # released by the gate when the request ends

    def refuse(self) -> Overloaded:
        self.telemetry.dropped.labels("rejected_queue_full").inc()
        return Overloaded("the server is overloaded (its queues are full)", retry_after_s=1)


class AdmissionDoor:
    """Whether a request may wait for the device: asked once per request, by whichever layer sees it
    first (the protocol, else the gate)."""

    def __init__(self, admission_of: Callable[[], Admission | None], telemetry: Any) -> None:
        self.admission_of = admission_of  # None until start-up made one
        self.telemetry = telemetry

    def refusal(self, scope: Scope) -> Response | None:
        """The 429 for this request while the queues are full (counted as refused, its route set in
        ``scope``), or None to let it in: a guarded request let in gets its ticket in ``scope`` (other
        requests None there, so that the gate does not ask again)."""
        scope[_TICKET] = None
        if scope["method"] != "POST":
            return None
        admission = self.admission_of()
        if admission is None:
            return None
        match = match_hot_route(scope["path"])
        if match is None or not match.guarded:
            return None
        if not admission.full:
            scope[_TICKET] = admission.reserve()
            return None
        scope["route"] = match.label
        return arrwdb_error_response(admission.refuse(), openai=openai_shaped(scope["path"]))

    def answered(self, scope: Scope, status: int) -> None:
        """Count a refusal written by the protocol in the HTTP metrics, as ``HttpMetrics`` counts the
        answers that pass through it (taking no measurable time: written as the headers arrived)."""
        self.telemetry.observe_http(scope["method"], scope["route"].path, status, 0.0)


class AdmissionGate:
    def __init__(self, app: ASGIApp, door: AdmissionDoor) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _TICKET not in scope:  # not asked at the door (the protocol left it to the app)
            refusal = self.door.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        ticket: AdmissionTicket | None = scope.pop(_TICKET)
        if ticket is None:  # not a guarded route
            await self.app(scope, receive, send)
            return
        admitted = ADMITTED.set(ticket)
        try:
            await self.app(scope, receive, send)
        finally:
            ticket.release()  # a no-op once its items were queued
            ADMITTED.reset(admitted)


_TICKET = "arrwdb.admission_ticket"  # a scope key: the door's answer (a ticket or None) until the gate takes it
