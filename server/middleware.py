"""Pure ASGI middleware (BaseHTTPMiddleware would break disconnect detection and streaming)."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arrwdb.config import MIB
from arrwdb.errors import PayloadTooLarge
from arrwdb.runtime.telemetry import Telemetry
from arrwdb.server.errors import arrwdb_error_response, openai_shaped


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with 413: at once from Content-Length, and by counting the
    streamed bytes for chunked uploads (raised from ``receive`` so the route never sees the excess)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = arrwdb_error_response(self._too_large(), openai=openai_shaped(scope["path"]))
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counted_receive, send)

    def _too_large(self) -> PayloadTooLarge:
        # Names the setting: the limit is the operator's to raise, not a fixed property of the API.
        return PayloadTooLarge(
            f"the body is larger than {self.max_bytes} bytes ({self.max_bytes / MIB:g} MiB), the limit set by "
            "ARRWDB_MAX_REQUEST_BYTES; send fewer documents or queries a request"
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class HttpMetrics:
    """Per-route request counts and latency, labelled by the route template (not the raw path, which
    would create one series per library and document)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.telemetry.request_started()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.telemetry.request_ended()
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.telemetry.observe_http(method, template, status, time.perf_counter() - started)
