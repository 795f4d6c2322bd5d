"""Thin synchronous and asynchronous HTTP clients for the arrwdb REST API (see API.md).

Both clients share every request builder and the response decoding.  A builder (``_search(...)``)
is a plain function holding the method's signature and defaults; it returns a :class:`Call` that
names method, path, body and how to decode the answer.  Each client method is one line,
``search = _sync(_search)`` or ``search = _async(_search)``, which sends that Call through the
client's ``_send``.  So the two clients cannot drift apart (a test checks that they send identical
requests), and the signatures and docstrings live in one place.

This module is imported by the CLI's client commands, so it must stay light: no torch, no server,
and numpy only ever reaches it as a value (orjson serialises arrays without importing numpy here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import orjson

from arrwdb import __version__

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ApiError", "AsyncClient", "Call", "Client"]

Vector: TypeAlias = "Sequence[float] | np.ndarray"
Json: TypeAlias = dict[str, Any]
DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")
P = ParamSpec("P")


class ApiError(Exception):
    """A non-2xx answer: ``status``, the API.md error ``type`` and ``message``, and ``Retry-After``."""

    def __init__(self, status: int, type: str, message: str, retry_after: float | None = None) -> None:
        # All four go to Exception.args so the error pickles (e.g. across a process pool).
        super().__init__(status, type, message, retry_after)
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


# --- response decoding (shared) ----------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date; anything else is ignored."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error(response: httpx.Response) -> ApiError:
    """Build an ApiError from any error response, including a proxy's HTML page or an empty body."""
    kind, message = "http_error", ""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        kind = str(body["error"].get("type") or kind)
        message = str(body["error"].get("message") or "")
    elif isinstance(body, dict) and "detail" in body:  # a framework default, not API.md's shape
        message = str(body["detail"])
    else:
        message = response.text.strip()[:500]
    return ApiError(
        response.status_code,
        kind,
        message or response.reason_phrase,
        _retry_after(response.headers.get("retry-after")),
    )


def _json(response: httpx.Response) -> Any:
    return orjson.loads(response.content) if response.content else None


def _text(response: httpx.Response) -> str:
    return response.text


def _nothing(response: httpx.Response) -> None:
    return None


def _field(name: str) -> Callable[[httpx.Response], Any]:
    def decode(response: httpx.Response) -> Any:
        body = _json(response)
        if not isinstance(body, dict) or name not in body:
            # A 2xx without the contract's field: not an arrwdb server (or a bug) -- say so plainly.
            raise ApiError(response.status_code, "invalid_response", f"response has no {name!r} field")
        return body[name]

    return decode


def _decode(call: Call[T], response: httpx.Response) -> T:
    if not response.is_success:
        raise _error(response)
    return call.decode(response)


def _encode(body: Any) -> bytes | None:
    return None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


# --- request building (shared) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One REST request and how to decode its successful answer."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, Any] | None = None
    decode: Callable[[httpx.Response], T] = _json


def _seg(value: str) -> str:
    # Percent-encode a path segment; "." and ".." are legal names but would be collapsed as dot
    # segments by URL normalisation, so they are encoded too (the server decodes them back).
    quoted = quote(str(value), safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _lib(library: str) -> str:
    return f"/v1/libraries/{_seg(library)}"


def _without_none(**fields: Any) -> Json:
    """Omit unset optional fields so the server applies its own defaults."""
    return {key: value for key, value in fields.items() if value is not None}


def _health() -> Call[Json]:
    """GET /health: liveness, ``{"status": "ok"}``."""
    return Call("GET", "/health")


def _ready() -> Call[Json]:
    """GET /ready: the body when serving; raises ApiError(503) while the model loads."""
    return Call("GET", "/ready")


def _metrics() -> Call[str]:
    """GET /metrics: Prometheus text."""
    return Call("GET", "/metrics", decode=_text)


def _create_library(
    name: str,
    dimension: int | None = None,
    index_type: str | None = None,
    metric: str | None = None,
    index_params: Json | None = None,
) -> Call[Json]:
    """POST /v1/libraries -> the Library; unset options take the server's defaults."""
    body = _without_none(
        name=name, dimension=dimension, index_type=index_type, metric=metric, index_params=index_params
    )
    return Call("POST", "/v1/libraries", body)


def _list_libraries() -> Call[list[Json]]:
    return Call("GET", "/v1/libraries", decode=_field("libraries"))


def _get_library(library: str) -> Call[Json]:
    return Call("GET", _lib(library))


def _delete_library(library: str) -> Call[None]:
    return Call("DELETE", _lib(library), decode=_nothing)


def _statistics(library: str) -> Call[Json]:
    return Call("GET", f"{_lib(library)}/statistics")


def _add_document(library: str, document: Json) -> Call[str]:
    """Create or replace (upsert by ``id``) one Document; returns its id."""
    return Call("POST", f"{_lib(library)}/documents", document, decode=_field("id"))


def _add_documents(library: str, documents: Sequence[Json]) -> Call[list[str]]:
    """1 to 1000 Documents, all or nothing; returns their ids in input order."""
    return Call("POST", f"{_lib(library)}/documents/batch", {"documents": documents}, decode=_field("ids"))


def _list_documents(library: str, limit: int = 100, cursor: str | None = None) -> Call[Json]:
    """One page: ``{"documents": [...], "next_cursor": str | None}``."""
    return Call("GET", f"{_lib(library)}/documents", params=_without_none(limit=limit, cursor=cursor))


def _get_document(library: str, doc_id: str) -> Call[Json]:
    return Call("GET", f"{_lib(library)}/documents/{_seg(doc_id)}")


def _delete_document(library: str, doc_id: str) -> Call[None]:
    return Call("DELETE", f"{_lib(library)}/documents/{_seg(doc_id)}", decode=_nothing)


def _search(
    library: str,
    query: str | None = None,
    embedding: Vector | None = None,
    k: int = 10,
    filter: Json | None = None,
    include_text: bool = True,
    params: Json | None = None,
) -> Call[Json]:
    """Exactly one of ``query`` / ``embedding`` (a list or numpy array) -> ``{"results", "took_ms"}``."""
    body = _without_none(query=query, embedding=embedding, k=k, filter=filter, include_text=include_text, params=params)
    return Call("POST", f"{_lib(library)}/search", body)


def _search_batch(library: str, queries: Sequence[Json]) -> Call[Json]:
    """1 to 1000 Query objects -> ``{"results": [[Hit]], "took_ms"}``."""
    return Call("POST", f"{_lib(library)}/search/batch", {"queries": queries})


def _embed(texts: Sequence[str]) -> Call[Json]:
    """1 to 1000 texts -> ``{"embeddings": [[float]], "dimension"}`` (normalised)."""
    return Call("POST", "/v1/embed", {"texts": list(texts)})


# --- the clients -------------------------------------------------------------------------------


def _named(method: Callable[..., Any], owner: str) -> Any:
    # wraps() copied the builder's "_search"; tracebacks and help() should say "Client.search".
    method.__name__ = method.__name__.lstrip("_")
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


def _request_args(call: Call[Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"} if call.body is not None else None
    return {"content": _encode(call.body), "params": call.params, "headers": headers}


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
        return _decode(call, self._http.request(call.method, call.path, **_request_args(call)))

    health = _sync(_health)
    ready = _sync(_ready)
    metrics = _sync(_metrics)
    create_library = _sync(_create_library)
    list_libraries = _sync(_list_libraries)
    get_library = _sync(_get_library)
    delete_library = _sync(_delete_library)
    statistics = _sync(_statistics)
    add_document = _sync(_add_document)
    add_documents = _sync(_add_documents)
    list_documents = _sync(_list_documents)
    get_document = _sync(_get_document)
    delete_document = _sync(_delete_document)
    search = _sync(_search)
    search_batch = _sync(_search_batch)
    embed = _sync(_embed)

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
        return _decode(call, await self._http.request(call.method, call.path, **_request_args(call)))

    health = _async(_health)
    ready = _async(_ready)
    metrics = _async(_metrics)
    create_library = _async(_create_library)
    list_libraries = _async(_list_libraries)
    get_library = _async(_get_library)
    delete_library = _async(_delete_library)
    statistics = _async(_statistics)
    add_document = _async(_add_document)
    add_documents = _async(_add_documents)
    list_documents = _async(_list_documents)
    get_document = _async(_get_document)
    delete_document = _async(_delete_document)
    search = _async(_search)
    search_batch = _async(_search_batch)
    embed = _async(_embed)

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
