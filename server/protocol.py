"""The HTTP protocol with a header deadline, against idle and slowloris connections, and a door that
refuses overload as soon as a request's headers are parsed.

uvicorn closes a keep-alive connection that stays idle between requests (``timeout_keep_alive``), but
it has no deadline for a request's headers: a connection that is opened and never speaks, or that
trickles its headers a byte at a time, holds its socket forever, and enough of them exhaust the
process's file descriptors.  This subclass of uvicorn's httptools protocol closes a connection whose
request headers are not complete ``header_timeout_s`` after it opened (or after its previous response
ended), like nginx's ``client_header_timeout``.

Given an ``AdmissionDoor`` (``server/admission.py``), a request the door refuses is answered in the
parser's callback, through uvicorn's own ``RequestResponseCycle.send`` (its headers, keep-alive and
pipelining rules), instead of in an ASGI task queued behind the event loop's backlog.  Left to the app
(whose ``AdmissionGate`` asks the same door): a client whose connection is not taking writes (``send``
would have to wait) and a request that expects ``100 Continue``.  Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.responses import Response

    from arrwdb.server.admission import AdmissionDoor

log = logging.getLogger("arrwdb.server")


def guarded_protocol(header_timeout_s: float, door: AdmissionDoor | None = None) -> type[asyncio.Protocol] | str:
    """uvicorn's ``http`` argument: the guarded httptools protocol, or "auto" without httptools (and
    then refusals take the ASGI gate)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extras: no header deadline
        log.warning("httptools is not installed: connections get no header deadline")
        return "auto"
    if door is not None and not hasattr(HttpToolsProtocol, "_start_asgi_task"):  # uvicorn < 0.45
        log.warning("this uvicorn has no _start_asgi_task: overload is refused by the app, not at the door")

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._disarm_header_timer()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            queued = bool(self.pipeline)  # a pipelined request already has its headers
            super().on_response_complete()
            if not queued and not self.transport.is_closing():
                self._arm_header_timer()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            # Called when a request may be answered now (not queued behind a pipelined one), and with
            # uvicorn's own 503 app instead of ours past its concurrency limit.
            answerable = not self.flow.write_paused and not cycle.waiting_for_100_continue
            if door is not None and app is self.app and answerable:
                refusal = door.refusal(cycle.scope)
                if refusal is not None:
                    _answer_now(cycle, refusal)
                    door.answered(cycle.scope, refusal.status_code)
                    return
            super()._start_asgi_task(cycle, app)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_deadline)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


def _answer_now(cycle: Any, response: Response) -> None:
    """Write a complete response through ``cycle.send`` without an event loop turn: with writes not
    paused, uvicorn's ``send`` never suspends, so each message completes in one step."""
    _run_without_suspending(
        cycle.send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    )
    _run_without_suspending(cycle.send({"type": "http.response.body", "body": response.body}))


def _run_without_suspending(step: Coroutine[Any, Any, None]) -> None:
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError("uvicorn's send suspended while writes were not paused")
