"""Drop work whose client went away: a search or embed waiting in the queue is cancelled when the
connection closes, so the scheduler skips it before compute (Starlette never cancels a handler)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from arrwdb.runtime.telemetry import Telemetry

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T], telemetry: Telemetry) -> T:
    """Await ``work``; if the client disconnects first, cancel it (a queued request is then dropped
    before compute) and raise ClientDisconnected.  One watcher task per request, nothing more."""
    current = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the body was read already: the next message is the disconnect
        gone = True
        if current is not None:
            current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        telemetry.dropped.labels("disconnected").inc()
        raise ClientDisconnected from None
    finally:
        watcher.cancel()
