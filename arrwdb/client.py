"""Thin synchronous and asynchronous HTTP clients for the arrwdb REST API (see API.md).

Both clients send the same requests: :mod:`arrwdb.client_calls` holds every request builder and the
response decoding.  A builder (``calls.search(...)``) holds the method's signature and defaults and
returns a :class:`Call`; each client method is one line, ``search = _sync(calls.search)`` or
``search = _async(calls.search)``, which sends that Call through the client's ``_send``.  So the two
clients cannot drift apart (a test checks that they send identical requests), and the signatures and
docstrings live in one place.

This module is imported by the CLI's client commands, so it must stay light: no torch, no server,
and numpy only ever reaches it as a value (orjson serialises arrays without importing numpy here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from arrwdb import __version__
from arrwdb import client_calls as calls
from arrwdb.client_calls import ApiError, Call, Json, decode_response, request_args

__all__ = ["ApiError", "AsyncClient", "Call", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")
P = ParamSpec("P")


def _named(method: Callable[..., Any], owner: str) -> Any:
    # wraps() copied the builder's "arrwdb.client_calls.search"; tracebacks and help() should say
    # "arrwdb.client.Client.search".
    method.__module__ = __name__
    method.__qualname__ = f"{owner}.{method.__name__}"
    return method


def _sync(builder: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """A Client method that builds the Call and sends it; signature and docstring are the builder's."""

    @wraps(builder)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._send(builder(*args, **kwargs))

    return _named(method, "Client")


def _async(builder: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """The AsyncClient twin of :func:`_sync`."""

    @wraps(builder)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._send(builder(*args, **kwargs))

    return _named(method, "AsyncClient")


def _http_options(url: str, api_key: str | None, timeout: float, limits: httpx.Limits | None) -> dict:
    headers = {"Accept": "application/json", "User-Agent": f"arrwdb-client/{__version__}"}
    if api_key:
        headers["X-API-Key"] = api_key
    options = {"base_url": url, "headers": headers, "timeout": httpx.Timeout(timeout)}
    return options | ({"limits": limits} if limits is not None else {})


def _not_ready(exc: Exception) -> bool:
    """True for the failures that mean 'still starting': 503, or nothing listening yet."""
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.status == 503)


class Client:
    """Synchronous client.  Raises :class:`ApiError` on any non-2xx answer and httpx's own
    ``httpx.TransportError`` when the server cannot be reached."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._http = httpx.Client(transport=transport, **_http_options(url, api_key, timeout, limits))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        return decode_response(call, self._http.request(call.method, call.path, **request_args(call)))

    health = _sync(calls.health)
    ready = _sync(calls.ready)
    metrics = _sync(calls.metrics)
    create_library = _sync(calls.create_library)
    list_libraries = _sync(calls.list_libraries)
    get_library = _sync(calls.get_library)
    delete_library = _sync(calls.delete_library)
    statistics = _sync(calls.statistics)
    add_document = _sync(calls.add_document)
    add_documents = _sync(calls.add_documents)
    list_documents = _sync(calls.list_documents)
    get_document = _sync(calls.get_document)
    delete_document = _sync(calls.delete_document)
    search = _sync(calls.search)
    search_batch = _sync(calls.search_batch)
    embed = _sync(calls.embed)

    def iter_documents(self, library: str, page_size: int = 1000) -> Iterator[Json]:
        """Every document of the library, following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.list_documents(library, limit=page_size, cursor=cursor)
            yield from page["documents"]
            if not (cursor := page.get("next_cursor")):
                return

    def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        """Poll /ready through 503s and refused connections; other errors are raised at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ready()
                return
            except (ApiError, httpx.TransportError) as exc:
                if not _not_ready(exc) or time.monotonic() + interval > deadline:
                    raise
            time.sleep(interval)


class AsyncClient:
    """The same API as :class:`Client` on ``httpx.AsyncClient``: every method is a coroutine
    (``iter_documents`` an async generator).  Pass ``limits`` to allow more concurrent requests."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(transport=transport, **_http_options(url, api_key, timeout, limits))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    aclose = close

    async def _send(self, call: Call[T]) -> T:
        return decode_response(call, await self._http.request(call.method, call.path, **request_args(call)))

    health = _async(calls.health)
    ready = _async(calls.ready)
    metrics = _async(calls.metrics)
    create_library = _async(calls.create_library)
    list_libraries = _async(calls.list_libraries)
    get_library = _async(calls.get_library)
    delete_library = _async(calls.delete_library)
    statistics = _async(calls.statistics)
    add_document = _async(calls.add_document)
    add_documents = _async(calls.add_documents)
    list_documents = _async(calls.list_documents)
    get_document = _async(calls.get_document)
    delete_document = _async(calls.delete_document)
    search = _async(calls.search)
    search_batch = _async(calls.search_batch)
    embed = _async(calls.embed)

    async def iter_documents(self, library: str, page_size: int = 1000) -> AsyncIterator[Json]:
        cursor: str | None = None
        while True:
            page = await self.list_documents(library, limit=page_size, cursor=cursor)
            for document in page["documents"]:
                yield document
            if not (cursor := page.get("next_cursor")):
                return

    async def wait_until_ready(self, timeout: float = 60.0, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.ready()
                return
            except (ApiError, httpx.TransportError) as exc:
                if not _not_ready(exc) or time.monotonic() + interval > deadline:
                    raise
            await asyncio.sleep(interval)
