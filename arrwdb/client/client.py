"""Thin synchronous and asynchronous HTTP clients for the arrwdb REST API (see API.md).

Both clients send the same requests: :mod:`arrwdb.client.calls` holds every request builder and the
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
import inspect
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

import arrwdb.client.calls as calls
from arrwdb import __version__
from arrwdb.client.calls import (
    KEY_VARIABLE,
    MAX_BATCH,
    ApiError,
    Call,
    Json,
    decode_response,
    document_batches,
    library_mismatch,
    request_args,
    upload_progress,
)

__all__ = ["ApiError", "AsyncClient", "Call", "Client"]

DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")
P = ParamSpec("P")


_CALL_OF = re.compile(r"Call\[(.*)\]")


def _plain_return(annotation: Any) -> Any:
    """What a method returns, from its builder's ``Call[...]``: ``Call[Json]`` -> ``dict[str, Any]``."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    match = _CALL_OF.fullmatch(text)
    return re.sub(r"\bJson\b", "dict[str, Any]", match.group(1)) if match else annotation


def _named(method: Callable[..., Any], owner: str, builder: Callable[..., Any]) -> Any:
    # wraps() copied the builder's "arrwdb.client.calls.search"; tracebacks and help() should say
    # "arrwdb.client.client.Client.search", and show what the method returns (a dict, a list), not the Call.
    method.__module__ = __name__
    method.__qualname__ = f"{owner}.{method.__name__}"
    signature = inspect.signature(builder)
    returns = _plain_return(signature.return_annotation)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(
        parameters=[self_param, *signature.parameters.values()], return_annotation=returns
    )
    method.__annotations__ = {**builder.__annotations__, "return": returns}
    return method


def _sync(builder: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """A Client method that builds the Call and sends it; signature and docstring are the builder's."""

    @wraps(builder)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._send(builder(*args, **kwargs))

    return _named(method, "Client", builder)


def _async(builder: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """The AsyncClient twin of :func:`_sync`."""

    @wraps(builder)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._send(builder(*args, **kwargs))

    return _named(method, "AsyncClient", builder)


def _api_key(api_key: str | None) -> str | None:
    """The key to send: the one given, else ``$ARRWDB_API_KEY``; "" sends none."""
    return (os.environ.get(KEY_VARIABLE) if api_key is None else api_key) or None


def _http_options(url: str, api_key: str | None, timeout: float, limits: httpx.Limits | None) -> dict:
    headers = {"Accept": "application/json", "User-Agent": f"arrwdb-client/{__version__}"}
    if api_key:
        headers["X-API-Key"] = api_key
    options = {"base_url": url, "headers": headers, "timeout": httpx.Timeout(timeout)}
    return options | ({"limits": limits} if limits is not None else {})


def _existing(library: Json, name: str, fields: dict[str, Any]) -> Json:
    mismatch = library_mismatch(library, fields)
    if mismatch:
        raise ValueError(f"library {name!r} exists with other settings: {mismatch}")
    return library


def _not_ready(exc: Exception) -> bool:
    """True for the failures that mean 'still starting': 503, or nothing listening yet."""
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.status == 503)


class Client:
    """Synchronous client.  Raises :class:`ApiError` on any non-2xx answer and httpx's own
    ``httpx.TransportError`` when the server cannot be reached.  ``api_key`` defaults to
    ``$ARRWDB_API_KEY``.  Every method is described in docs/CLIENT.md."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        api_key = _api_key(api_key)
        self._key_sent = api_key is not None
        self._http = httpx.Client(transport=transport, **_http_options(url, api_key, timeout, limits))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        response = self._http.request(call.method, call.path, **request_args(call))
        return decode_response(call, response, self._key_sent)

    def get_or_create_library(self, name: str, **fields: Any) -> dict[str, Any]:
        """The library named ``name``, created with ``fields`` if it does not exist (as Chroma's
        ``get_or_create_collection``).  An existing library whose given fields differ (``dimension``,
        ``metric``, ...) raises ValueError rather than being silently used."""
        try:
            return self.create_library(name, **fields)
        except ApiError as exc:
            if exc.status != 409:
                raise
        return _existing(self.get_library(name), name, fields)

    def add_documents(
        self, library: str, documents: Iterable[Json], batch_size: int = MAX_BATCH, progress: bool = False
    ) -> list[str]:
        """Add (or replace, by ``id``) any number of Documents; returns their ids in input order.

        Sent in requests of at most ``batch_size`` (1 to 1000) documents, each all or nothing; if one
        fails, the batches before it stay committed and the ApiError's ``written`` lists their ids.
        ``progress=True`` shows a tqdm bar."""
        ids: list[str] = []
        with upload_progress(documents, progress) as bar:
            for batch in document_batches(documents, batch_size):
                try:
                    ids += self._send(calls.add_document_batch(library, batch))
                except ApiError as exc:
                    exc.written = ids
                    raise
                bar.update(len(batch))
        return ids

    health = _sync(calls.health)
    ready = _sync(calls.ready)
    metrics = _sync(calls.metrics)
    create_library = _sync(calls.create_library)
    list_libraries = _sync(calls.list_libraries)
    get_library = _sync(calls.get_library)
    delete_library = _sync(calls.delete_library)
    statistics = _sync(calls.statistics)
    add_document = _sync(calls.add_document)
    list_documents = _sync(calls.list_documents)
    get_document = _sync(calls.get_document)
    delete_document = _sync(calls.delete_document)
    patch_document = _sync(calls.patch_document)
    delete_documents = _sync(calls.delete_documents)
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
        api_key = _api_key(api_key)
        self._key_sent = api_key is not None
        self._http = httpx.AsyncClient(transport=transport, **_http_options(url, api_key, timeout, limits))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    aclose = close

    async def _send(self, call: Call[T]) -> T:
        response = await self._http.request(call.method, call.path, **request_args(call))
        return decode_response(call, response, self._key_sent)

    async def get_or_create_library(self, name: str, **fields: Any) -> dict[str, Any]:
        """See :meth:`Client.get_or_create_library`."""
        try:
            return await self.create_library(name, **fields)
        except ApiError as exc:
            if exc.status != 409:
                raise
        return _existing(await self.get_library(name), name, fields)

    async def add_documents(
        self, library: str, documents: Iterable[Json], batch_size: int = MAX_BATCH, progress: bool = False
    ) -> list[str]:
        """See :meth:`Client.add_documents`."""
        ids: list[str] = []
        with upload_progress(documents, progress) as bar:
            for batch in document_batches(documents, batch_size):
                try:
                    ids += await self._send(calls.add_document_batch(library, batch))
                except ApiError as exc:
                    exc.written = ids
                    raise
                bar.update(len(batch))
        return ids

    health = _async(calls.health)
    ready = _async(calls.ready)
    metrics = _async(calls.metrics)
    create_library = _async(calls.create_library)
    list_libraries = _async(calls.list_libraries)
    get_library = _async(calls.get_library)
    delete_library = _async(calls.delete_library)
    statistics = _async(calls.statistics)
    add_document = _async(calls.add_document)
    list_documents = _async(calls.list_documents)
    get_document = _async(calls.get_document)
    delete_document = _async(calls.delete_document)
    patch_document = _async(calls.patch_document)
    delete_documents = _async(calls.delete_documents)
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
