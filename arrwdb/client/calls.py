"""The arrwdb REST API (see API.md) as plain data: what each client call sends, and how its answer reads.

A builder (``search(...)``) is a plain function holding the call's signature, defaults and docstring;
it returns a :class:`Call` that names method, path, body and how to decode the answer.  Sending is
:mod:`arrwdb.client.client`'s job: its sync and async clients turn each builder into a method, so the two
cannot drift apart.  Like the clients, this module must stay light (no torch, no server; numpy only
ever reaches it as a value, which orjson serialises without importing numpy here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import orjson

if TYPE_CHECKING:
    import numpy as np

Vector: TypeAlias = "Sequence[float] | np.ndarray"
Json: TypeAlias = dict[str, Any]
T = TypeVar("T")


class ApiError(Exception):
    """A non-2xx answer: ``status``, the API.md error ``type`` and ``message``, and ``Retry-After``."""

    def __init__(self, status: int, type: str, message: str, retry_after: float | None = None) -> None:
        # All four go to Exception.args so the error pickles (e.g. across a process pool).
        super().__init__(status, type, message, retry_after)
        self.status = status
        self.type = type
        self.message = message
        self.retry_after = retry_after
        # Set by add_documents when a later batch fails: the ids of the batches already committed.
        self.written: list[str] | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


# --- response decoding, request encoding -------------------------------------------------------


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


KEY_VARIABLE = "ARRWDB_API_KEY"  # the one key a client sends; the server's list is ARRWDB_API_KEYS


def _key_hint(key_sent: bool) -> str:
    said = "the key sent was refused" if key_sent else "no API key was sent"
    return (
        f"{said}: pass one with Client(api_key=...), arrwdb ingest --api-key KEY, or the environment "
        f"variable {KEY_VARIABLE} (one key, one of those the server lists in ARRWDB_API_KEYS or minted)"
    )


def decode_response(call: Call[T], response: httpx.Response, key_sent: bool = False) -> T:
    """The Call's decoded answer, or the ApiError that a non-2xx answer stands for (a 401 says how
    to pass a key)."""
    if not response.is_success:
        error = _error(response)
        if error.status == 401 and not call.path.startswith("/v1/admin"):
            error = ApiError(401, error.type, f"{error.message} ({_key_hint(key_sent)})", error.retry_after)
        raise error
    return call.decode(response)


def _encode(body: Any) -> bytes | None:
    return None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def request_args(call: Call[Any]) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.request`` (or the async one's) that send ``call``."""
    headers = {"Content-Type": "application/json"} if call.body is not None else None
    return {"content": _encode(call.body), "params": call.params, "headers": headers}


# --- request building --------------------------------------------------------------------------


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


def health() -> Call[Json]:
    """GET /health: liveness, ``{"status": "ok"}``."""
    return Call("GET", "/health")


def ready() -> Call[Json]:
    """GET /ready: the body when serving; raises ApiError(503) while the model loads."""
    return Call("GET", "/ready")


def metrics() -> Call[str]:
    """GET /metrics: Prometheus text."""
    return Call("GET", "/metrics", decode=_text)


def create_library(
    name: str,
    dimension: int | None = None,
    index_type: str | None = None,
    metric: str | None = None,
    index_params: Json | None = None,
    **fields: Any,
) -> Call[Json]:
    """POST /v1/libraries -> the Library; unset options take the server's defaults; other keyword
    arguments are sent as further fields of the body.  ApiError 409 if the name exists."""
    body = _without_none(
        name=name, dimension=dimension, index_type=index_type, metric=metric, index_params=index_params, **fields
    )
    return Call("POST", "/v1/libraries", body)


def library_mismatch(library: Json, fields: Mapping[str, Any]) -> str | None:
    """What differs between an existing Library and the fields asked for (None: nothing).  Only the
    fields given are compared, and of ``index_params`` only the parameters given."""
    differences = []
    for name, wanted in fields.items():
        if wanted is None or name not in library:
            continue
        have = library[name]
        if name == "index_params" and isinstance(wanted, Mapping) and isinstance(have, Mapping):
            differences += [
                f"index_params.{k} is {have.get(k)!r}, not {v!r}" for k, v in wanted.items() if have.get(k) != v
            ]
        elif have != wanted:
            differences.append(f"{name} is {have!r}, not {wanted!r}")
    return "; ".join(differences) or None


def list_libraries() -> Call[list[Json]]:
    return Call("GET", "/v1/libraries", decode=_field("libraries"))


def get_library(library: str) -> Call[Json]:
    return Call("GET", _lib(library))


def delete_library(library: str) -> Call[None]:
    return Call("DELETE", _lib(library), decode=_nothing)


def statistics(library: str) -> Call[Json]:
    return Call("GET", f"{_lib(library)}/statistics")


def add_document(library: str, document: Json) -> Call[str]:
    """Create or replace (upsert by ``id``) one Document; returns its id."""
    return Call("POST", f"{_lib(library)}/documents", document, decode=_field("id"))


def add_document_batch(library: str, documents: Sequence[Json]) -> Call[list[str]]:
    """One request of 1 to 1000 Documents, all or nothing; returns their ids in input order."""
    return Call("POST", f"{_lib(library)}/documents/batch", {"documents": documents}, decode=_field("ids"))


MAX_BATCH = 1000  # API.md: a batch request holds 1 to 1000 documents


def document_batches(documents: Iterable[Json], batch_size: int) -> Iterator[list[Json]]:
    """``documents`` in lists of at most ``batch_size`` (1 to 1000), in input order."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
    batch: list[Json] = []
    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def upload_progress(documents: Iterable[Json], progress: bool) -> Any:
    """A tqdm bar counting documents (a no-op bar unless ``progress``)."""
    from tqdm import tqdm  # only the uploads need it

    total = len(documents) if isinstance(documents, Sized) else None
    return tqdm(total=total, unit="doc", desc="add_documents", disable=not progress)


def list_documents(library: str, limit: int = 100, cursor: str | None = None) -> Call[Json]:
    """One page: ``{"documents": [...], "next_cursor": str | None}``."""
    return Call("GET", f"{_lib(library)}/documents", params=_without_none(limit=limit, cursor=cursor))


def get_document(library: str, doc_id: str) -> Call[Json]:
    return Call("GET", f"{_lib(library)}/documents/{_seg(doc_id)}")


def delete_document(library: str, doc_id: str) -> Call[None]:
    return Call("DELETE", f"{_lib(library)}/documents/{_seg(doc_id)}", decode=_nothing)


def patch_document(library: str, doc_id: str, title: str | None = None, metadata: Json | None = None) -> Call[Json]:
    """Change a document's title and metadata without embedding it again: ``metadata`` is a JSON merge
    patch (a key set to None is removed).  Returns the document as it is now."""
    return Call("PATCH", f"{_lib(library)}/documents/{_seg(doc_id)}", _without_none(title=title, metadata=metadata))


def delete_documents(library: str, ids: Sequence[str] | None = None, filter: Json | None = None) -> Call[int]:
    """Delete by ``ids`` or by ``filter`` (exactly one), all or nothing; returns how many were deleted."""
    body = {"ids": list(ids)} if ids is not None else {"filter": filter}
    if (ids is None) == (filter is None):
        raise ValueError("give exactly one of ids and filter")
    return Call("POST", f"{_lib(library)}/documents/delete", body, decode=_field("deleted"))


def search(
    library: str,
    query: str | None = None,
    embedding: Vector | None = None,
    k: int = 10,
    filter: Json | None = None,
    include_text: bool = True,
    params: Json | None = None,
    embedding_base64: str | None = None,
    **fields: Any,
) -> Call[list[Json]]:
    """Exactly one of ``query`` / ``embedding`` (a list or numpy array) / ``embedding_base64`` (base64 of
    little-endian float32) -> the hits, best first (each ``{document_id, chunk_index, score, title,
    text, metadata}``).  Other keyword arguments are sent as further Query fields."""
    body = _without_none(
        query=query,
        embedding=embedding,
        embedding_base64=embedding_base64,
        k=k,
        filter=filter,
        include_text=include_text,
        params=params,
        **fields,
    )
    return Call("POST", f"{_lib(library)}/search", body, decode=_field("results"))


def search_batch(library: str, queries: Sequence[Json]) -> Call[list[list[Json]]]:
    """1 to 1000 Query objects -> one list of hits per query, in input order."""
    return Call("POST", f"{_lib(library)}/search/batch", {"queries": queries}, decode=_field("results"))


def embed(texts: Sequence[str]) -> Call[Json]:
    """1 to 1000 texts -> ``{"embeddings": [[float]], "dimension"}`` (normalised)."""
    return Call("POST", "/v1/embed", {"texts": list(texts)})
