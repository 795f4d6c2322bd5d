"""Drop work whose client went away: a search or embed waiting in the queue is cancelled when the
connection closes, so the scheduler skips it before compute (Starlette never cancels a handler)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from arrwdb.telemetry import Telemetry

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(request: Request) -> None:
    while True:  # the body is read already: the next message is the disconnect
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T], telemetry: Telemetry) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    telemetry.dropped.labels("disconnected").inc()
    raise ClientDisconnected
