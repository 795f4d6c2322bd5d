"""Request shapes and error decoding of arrwdb.client.client, against httpx.MockTransport (no server)."""

from __future__ import annotations

import asyncio
import pickle
import re
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from arrwdb.client.client import ApiError, AsyncClient, Client

URL = "http://arrwdb.test"


class Recorder:
    """A MockTransport handler that records every request and answers from a fixed reply."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.reply = reply or (lambda request: httpx.Response(200, json={"ok": True}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.reply(request)

    def shape(self, index: int = -1) -> tuple[str, str, dict[str, str], Any]:
        request = self.requests[index]
        body = orjson.loads(request.content) if request.content else None
        return request.method, request.url.path, dict(request.url.params), body


# (method name, args, kwargs, expected HTTP method, path, query params, JSON body)
CASES: list[tuple[str, tuple, dict, str, str, dict, Any]] = [
    ("health", (), {}, "GET", "/health", {}, None),
    ("ready", (), {}, "GET", "/ready", {}, None),
    ("metrics", (), {}, "GET", "/metrics", {}, None),
    ("create_library", ("docs",), {}, "POST", "/v1/libraries", {}, {"name": "docs"}),
    (
        "create_library",
        ("vecs",),
        {"dimension": 8, "index_type": "hnsw", "metric": "l2", "index_params": {"m": 16}},
        "POST",
        "/v1/libraries",
        {},
        {"name": "vecs", "dimension": 8, "index_type": "hnsw", "metric": "l2", "index_params": {"m": 16}},
    ),
    ("list_libraries", (), {}, "GET", "/v1/libraries", {}, None),
    ("get_library", ("docs",), {}, "GET", "/v1/libraries/docs", {}, None),
    ("delete_library", ("lib-1",), {}, "DELETE", "/v1/libraries/lib-1", {}, None),
    ("statistics", ("docs",), {}, "GET", "/v1/libraries/docs/statistics", {}, None),
    (
        "add_document",
        ("docs", {"text": "hi"}),
        {},
        "POST",
        "/v1/libraries/docs/documents",
        {},
        {"text": "hi"},
    ),
    (
        "add_documents",
        ("docs", [{"id": "a", "text": "x"}, {"text": "y"}]),
        {},
        "POST",
        "/v1/libraries/docs/documents/batch",
        {},
        {"documents": [{"id": "a", "text": "x"}, {"text": "y"}]},
    ),
    ("list_documents", ("docs",), {}, "GET", "/v1/libraries/docs/documents", {"limit": "100"}, None),
    (
        "list_documents",
        ("docs",),
        {"limit": 5, "cursor": "abc"},
        "GET",
        "/v1/libraries/docs/documents",
        {"limit": "5", "cursor": "abc"},
        None,
    ),
    ("get_document", ("docs", "d:1"), {}, "GET", "/v1/libraries/docs/documents/d:1", {}, None),
    ("delete_document", ("docs", "d1"), {}, "DELETE", "/v1/libraries/docs/documents/d1", {}, None),
    (
        "patch_document",
        ("docs", "d1"),
        {"metadata": {"year": None, "topic": "cats"}},
        "PATCH",
        "/v1/libraries/docs/documents/d1",
        {},
        {"metadata": {"year": None, "topic": "cats"}},
    ),
    (
        "delete_documents",
        ("docs",),
        {"ids": ["a", "b"]},
        "POST",
        "/v1/libraries/docs/documents/delete",
        {},
        {"ids": ["a", "b"]},
    ),
    (
        "delete_documents",
        ("docs",),
        {"filter": {"topic": "cats"}},
        "POST",
        "/v1/libraries/docs/documents/delete",
        {},
        {"filter": {"topic": "cats"}},
    ),
    (
        "search",
        ("docs",),
        {"query": "cats"},
        "POST",
        "/v1/libraries/docs/search",
        {},
        {"query": "cats", "k": 10, "include_text": True},
    ),
    (
        "search",
        ("docs",),
        {
            "embedding": [0.5, 1.0],
            "k": 3,
            "filter": {"year": {"$gte": 2020}},
            "include_text": False,
            "params": {"ef_search": 64},
        },
        "POST",
        "/v1/libraries/docs/search",
        {},
        {
            "embedding": [0.5, 1.0],
            "k": 3,
            "filter": {"year": {"$gte": 2020}},
            "include_text": False,
            "params": {"ef_search": 64},
        },
    ),
    (
        "search_batch",
        ("docs", [{"query": "a"}, {"query": "b", "k": 2}]),
        {},
        "POST",
        "/v1/libraries/docs/search/batch",
        {},
        {"queries": [{"query": "a"}, {"query": "b", "k": 2}]},
    ),
    ("embed", (["a", "b"],), {}, "POST", "/v1/embed", {}, {"texts": ["a", "b"]}),
]


def reply_for(request: httpx.Request) -> httpx.Response:
    """Minimal, well-formed answers so every method can decode its response."""
    path = request.url.path
    if request.method == "DELETE":
        return httpx.Response(204)
    if path == "/metrics":
        return httpx.Response(200, text="# HELP up\nup 1\n")
    if path.endswith("/documents/batch"):
        return httpx.Response(201, json={"ids": ["a", "b"]})
    if path.endswith("/documents/delete"):
        return httpx.Response(200, json={"deleted": 2})
    if path.endswith("/documents") and request.method == "POST":
        return httpx.Response(201, json={"id": "d1"})
    if path == "/v1/libraries" and request.method == "GET":
        return httpx.Response(200, json={"libraries": [{"id": "l1", "name": "docs"}]})
    if path.endswith("/search"):
        return httpx.Response(200, json={"results": [{"document_id": "d1"}], "took_ms": 1.0})
    if path.endswith("/search/batch"):
        return httpx.Response(200, json={"results": [[{"document_id": "d1"}], []], "took_ms": 1.0})
    return httpx.Response(200, json={"echo": path})


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_request_shape(case: tuple) -> None:
    name, args, kwargs, method, path, params, body = case
    recorder = Recorder(reply_for)
    with Client(URL, api_key="k1", transport=httpx.MockTransport(recorder)) as client:
        getattr(client, name)(*args, **kwargs)
    assert recorder.shape() == (method, path, params, body)
    request = recorder.requests[0]
    assert request.headers["x-api-key"] == "k1"
    if body is not None:
        assert request.headers["content-type"] == "application/json"


def test_sync_and_async_send_identical_requests() -> None:
    sync_rec, async_rec = Recorder(reply_for), Recorder(reply_for)
    with Client(URL, api_key="k", transport=httpx.MockTransport(sync_rec)) as client:
        sync_results = [getattr(client, c[0])(*c[1], **c[2]) for c in CASES]

    async def drive() -> list[Any]:
        async with AsyncClient(URL, api_key="k", transport=httpx.MockTransport(async_rec)) as client:
            return [await getattr(client, c[0])(*c[1], **c[2]) for c in CASES]

    async_results = asyncio.run(drive())
    assert len(sync_rec.requests) == len(async_rec.requests) == len(CASES)
    for mine, theirs in zip(sync_rec.requests, async_rec.requests, strict=True):
        assert (mine.method, str(mine.url), mine.content) == (theirs.method, str(theirs.url), theirs.content)
        assert dict(mine.headers) == dict(theirs.headers)
    assert sync_results == async_results


def test_decoded_return_values() -> None:
    transport = httpx.MockTransport(Recorder(reply_for))
    with Client(URL, transport=transport) as client:
        assert client.add_document("docs", {"text": "x"}) == "d1"
        assert client.add_documents("docs", [{"text": "x"}, {"text": "y"}]) == ["a", "b"]
        assert client.list_libraries() == [{"id": "l1", "name": "docs"}]
        assert client.delete_library("docs") is None
        assert client.metrics().startswith("# HELP")
        assert client.health() == {"echo": "/health"}
        assert client.search("docs", query="q") == [{"document_id": "d1"}]
        assert client.search_batch("docs", [{"query": "a"}, {"query": "b"}]) == [[{"document_id": "d1"}], []]


def test_2xx_without_contract_field_is_an_api_error() -> None:
    with error_client(httpx.Response(201, json={"unexpected": 1})) as client, pytest.raises(ApiError) as info:
        client.add_document("docs", {"text": "x"})
    assert (info.value.status, info.value.type) == (201, "invalid_response")


def test_no_api_key_header_without_key() -> None:
    recorder = Recorder()
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        client.health()
    assert "x-api-key" not in recorder.requests[0].headers


def test_numpy_embedding_is_serialised() -> None:
    recorder = Recorder(reply_for)
    vector = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        client.search("docs", embedding=vector, k=2)
        client.add_document("docs", {"id": "v", "embedding": vector})
    assert recorder.shape(0)[3]["embedding"] == [0.25, -1.5, 3.0]
    assert recorder.shape(1)[3] == {"id": "v", "embedding": [0.25, -1.5, 3.0]}


def test_path_segments_are_escaped() -> None:
    recorder = Recorder()
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        client.get_document("my lib/x", "..")
    # The slash must not split the segment and ".." must not be collapsed as a dot segment.
    assert recorder.requests[0].url.raw_path == b"/v1/libraries/my%20lib%2Fx/documents/%2E%2E"


def error_client(response: httpx.Response) -> Client:
    return Client(URL, transport=httpx.MockTransport(lambda request: response))


def test_api_error_from_contract_body() -> None:
    body = {"error": {"type": "not_found", "message": "library 'x' not found"}}
    with error_client(httpx.Response(404, json=body)) as client, pytest.raises(ApiError) as info:
        client.get_library("x")
    assert (info.value.status, info.value.type, info.value.message) == (
        404,
        "not_found",
        body["error"]["message"],
    )
    assert info.value.retry_after is None
    assert str(info.value) == "404 not_found: library 'x' not found"


def test_api_error_carries_retry_after() -> None:
    body = {"error": {"type": "overloaded", "message": "queue full"}}
    response = httpx.Response(429, json=body, headers={"Retry-After": "2"})
    with error_client(response) as client, pytest.raises(ApiError) as info:
        client.search("docs", query="q")
    assert (info.value.status, info.value.type, info.value.retry_after) == (429, "overloaded", 2.0)


def test_api_error_tolerates_non_json_body() -> None:
    response = httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Retry-After": "soon"})
    with error_client(response) as client, pytest.raises(ApiError) as info:
        client.health()
    assert (info.value.status, info.value.type) == (502, "http_error")
    assert "Bad Gateway" in info.value.message
    assert info.value.retry_after is None  # an unparseable Retry-After is ignored, not an error


def test_api_error_empty_body_uses_reason_phrase_and_pickles() -> None:
    with error_client(httpx.Response(503)) as client, pytest.raises(ApiError) as info:
        client.ready()
    assert info.value.message == "Service Unavailable"
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.status, clone.type, clone.message) == (503, "http_error", "Service Unavailable")


def test_async_error_decoding_matches_sync() -> None:
    body = {"error": {"type": "conflict", "message": "name taken"}}
    transport = httpx.MockTransport(lambda request: httpx.Response(409, json=body))

    async def drive() -> ApiError:
        async with AsyncClient(URL, transport=transport) as client:
            with pytest.raises(ApiError) as info:
                await client.create_library("docs")
            return info.value

    error = asyncio.run(drive())
    assert (error.status, error.type, error.message) == (409, "conflict", "name taken")


def paged_reply(request: httpx.Request) -> httpx.Response:
    """Three pages of documents: cursors c1 -> c2 -> end."""
    pages = {
        None: ([{"id": "1"}, {"id": "2"}], "c1"),
        "c1": ([{"id": "3"}, {"id": "4"}], "c2"),
        "c2": ([{"id": "5"}], None),
    }
    documents, next_cursor = pages[request.url.params.get("cursor")]
    return httpx.Response(200, json={"documents": documents, "next_cursor": next_cursor})


def test_iter_documents_follows_cursor() -> None:
    recorder = Recorder(paged_reply)
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        ids = [doc["id"] for doc in client.iter_documents("docs", page_size=2)]
    assert ids == ["1", "2", "3", "4", "5"]
    assert [r.url.params.get("cursor") for r in recorder.requests] == [None, "c1", "c2"]
    assert {r.url.params["limit"] for r in recorder.requests} == {"2"}


def test_async_iter_documents_follows_cursor() -> None:
    recorder = Recorder(paged_reply)

    async def drive() -> list[str]:
        async with AsyncClient(URL, transport=httpx.MockTransport(recorder)) as client:
            return [doc["id"] async for doc in client.iter_documents("docs", page_size=2)]

    assert asyncio.run(drive()) == ["1", "2", "3", "4", "5"]
    assert len(recorder.requests) == 3


def test_wait_until_ready_polls_through_503() -> None:
    answers = iter([httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"status": "ready"})])
    recorder = Recorder(lambda request: next(answers))
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        client.wait_until_ready(timeout=5, interval=0.001)
    assert len(recorder.requests) == 3


def test_wait_until_ready_does_not_swallow_other_errors() -> None:
    with error_client(httpx.Response(401)) as client, pytest.raises(ApiError) as info:
        client.wait_until_ready(timeout=5, interval=0.001)
    assert info.value.status == 401


def batch_reply(request: httpx.Request) -> httpx.Response:
    """Answers a batch insert with its documents' ids."""
    documents = orjson.loads(request.content)["documents"]
    return httpx.Response(201, json={"ids": [d["id"] for d in documents]})


def test_add_documents_splits_into_batches_of_at_most_1000() -> None:
    recorder = Recorder(batch_reply)
    documents = [{"id": f"d{i}", "text": "x"} for i in range(2500)]
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        assert client.add_documents("docs", documents) == [d["id"] for d in documents]
        assert [len(recorder.shape(i)[3]["documents"]) for i in range(3)] == [1000, 1000, 500]
        # Any iterable, any batch size from 1 to 1000.
        assert client.add_documents("docs", iter(documents[:5]), batch_size=2) == ["d0", "d1", "d2", "d3", "d4"]
        assert [len(recorder.shape(i)[3]["documents"]) for i in range(3, 6)] == [2, 2, 1]
        assert client.add_documents("docs", []) == []
        assert len(recorder.requests) == 6
        for size in (0, 1001):
            with pytest.raises(ValueError, match="batch_size must be between 1 and 1000"):
                client.add_documents("docs", documents, batch_size=size)


def test_add_documents_async_matches_sync_and_reports_what_was_written() -> None:
    answers = iter(
        [batch_reply, lambda request: httpx.Response(422, json={"error": {"type": "invalid_input", "message": "bad"}})]
    )
    recorder = Recorder(lambda request: next(answers)(request))

    async def drive() -> ApiError:
        async with AsyncClient(URL, transport=httpx.MockTransport(recorder)) as client:
            with pytest.raises(ApiError) as info:
                await client.add_documents("docs", [{"id": f"d{i}"} for i in range(4)], batch_size=2, progress=True)
            return info.value

    error = asyncio.run(drive())
    assert error.status == 422 and error.written == ["d0", "d1"]


def library_reply(existing: dict[str, Any]) -> Callable[[httpx.Request], httpx.Response]:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"error": {"type": "conflict", "message": "name taken"}})
        return httpx.Response(200, json=existing)

    return reply


def test_get_or_create_library() -> None:
    created = Recorder(lambda request: httpx.Response(201, json={"name": "docs", "metric": "cosine"}))
    with Client(URL, transport=httpx.MockTransport(created)) as client:
        assert client.get_or_create_library("docs", metric="cosine") == {"name": "docs", "metric": "cosine"}
    assert [r.method for r in created.requests] == ["POST"]
    existing = {"name": "docs", "metric": "cosine", "dimension": 384, "index_params": {"m": 16, "ef_search": 64}}
    recorder = Recorder(library_reply(existing))
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        assert client.get_or_create_library("docs", dimension=384, index_params={"m": 16}) == existing
        with pytest.raises(ValueError, match=r"exists with other settings: metric is 'cosine', not 'l2'"):
            client.get_or_create_library("docs", metric="l2")
    assert [(r.method, r.url.path) for r in recorder.requests[:2]] == [
        ("POST", "/v1/libraries"),
        ("GET", "/v1/libraries/docs"),
    ]

    async def drive() -> Any:
        async with AsyncClient(URL, transport=httpx.MockTransport(Recorder(library_reply(existing)))) as client:
            return await client.get_or_create_library("docs")

    assert asyncio.run(drive()) == existing


def test_api_key_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARRWDB_API_KEY", "from-env")
    recorder = Recorder()
    with Client(URL, transport=httpx.MockTransport(recorder)) as client:
        client.health()
    with Client(URL, api_key="given", transport=httpx.MockTransport(recorder)) as client:
        client.health()
    with Client(URL, api_key="", transport=httpx.MockTransport(recorder)) as client:
        client.health()
    assert [r.headers.get("x-api-key") for r in recorder.requests] == ["from-env", "given", None]


def test_401_says_how_to_pass_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARRWDB_API_KEY", raising=False)
    body = {"error": {"type": "unauthorized", "message": "an API key is required"}}
    for api_key, said in ((None, "no API key was sent"), ("wrong", "the key sent was refused")):
        transport = httpx.MockTransport(lambda request: httpx.Response(401, json=body))
        with Client(URL, api_key=api_key, transport=transport) as client, pytest.raises(ApiError) as info:
            client.list_libraries()
        assert info.value.message.startswith("an API key is required (" + said)
        assert "ARRWDB_API_KEY" in info.value.message and "--api-key" in info.value.message


def test_methods_show_plain_return_types() -> None:
    import inspect

    expected = {
        "search": "list[dict[str, Any]]",
        "search_batch": "list[list[dict[str, Any]]]",
        "create_library": "dict[str, Any]",
        "get_or_create_library": "dict[str, Any]",
        "add_documents": "list[str]",
        "add_document": "str",
        "list_libraries": "list[dict[str, Any]]",
        "metrics": "str",
    }
    for cls in (Client, AsyncClient):
        for name, returns in expected.items():
            signature = inspect.signature(getattr(cls, name))
            assert signature.return_annotation == returns, (cls.__name__, name)
            assert "Call" not in str(signature)
            assert next(iter(signature.parameters)) == "self"


def test_every_public_method_is_in_the_reference() -> None:
    from pathlib import Path

    reference = (Path(__file__).resolve().parents[2] / "docs" / "CLIENT.md").read_text()
    documented = set(re.findall(r"^### `(\w+)\(", reference, flags=re.MULTILINE))
    for cls in (Client, AsyncClient):
        public = {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}
        public.discard("aclose")  # AsyncClient's alias of close, described under close
        assert public <= documented, sorted(public - documented)
    assert {"Client", "get_or_create_library", "add_documents", "search"} <= documented
