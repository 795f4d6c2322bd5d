"""The HTTP protocol with a header deadline, against idle and slowloris connections.

uvicorn closes a keep-alive connection that stays idle between requests (``timeout_keep_alive``), but
it has no deadline for a request's headers: a connection that is opened and never speaks, or that
trickles its headers a byte at a time, holds its socket forever, and enough of them exhaust the
process's file descriptors.  This subclass of uvicorn's httptools protocol closes a connection whose
request headers are not complete ``header_timeout_s`` after it opened (or after its previous response
ended), like nginx's ``client_header_timeout``.  Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("arrwdb.server")


def guarded_protocol(header_timeout_s: float) -> type[asyncio.Protocol] | str:
    """uvicorn's ``http`` argument: the guarded httptools protocol, or "auto" without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extras: no header deadline
        log.warning("httptools is not installed: connections get no header deadline")
        return "auto"

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
