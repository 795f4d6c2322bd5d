"""The hot path (server/fastpath.py) answers search, batch search, embed and insert requests exactly as the
full FastAPI stack does: same statuses, bodies, error shapes and headers, through the same
middlewares (auth, CORS, body limit, metrics), on a real server."""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx
import pytest

KEY = "hot-path-key"
ORIGIN = "https://app.example"
HEADERS = {"X-API-Key": KEY, "Origin": ORIGIN}
# Headers whose values must match; the timing headers only have to be present on both.
COMPARED = (
    "content-type",
    "content-length",
    "retry-after",
    "access-control-allow-origin",
    "access-control-expose-headers",
)
TIMING = ("x-queue-ms", "x-compute-ms", "x-batch-size")

REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0, 0], "k": 2}', HEADERS),
    ("/v1/libraries/words/search", b'{"query": "a ripe fruit", "k": 2, "include_text": false}', HEADERS),
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0, 0], "k": 2, "filter": {"colour": "red"}}', HEADERS),
    (
        "/v1/libraries/hot/search/batch",
        b'{"queries": [{"embedding": [0, 1, 0]}, {"embedding": [1, 1, 0], "k": 1}]}',
        HEADERS,
    ),
    ("/v1/embed", b'{"texts": ["one", "two"]}', HEADERS),
    # Inserts go to libraries no request here searches: both passes must see the same documents.
    ("/v1/libraries/sink/documents", b'{"id": "d", "embedding": [0, 0, 1], "metadata": {"colour": "blue"}}', HEADERS),
    ("/v1/libraries/sink-words/documents/batch", b'{"documents": [{"id": "e", "text": "a plum"}]}', HEADERS),
    # Errors: each must keep the API's error body and status.
    ("/v1/libraries/hot/search", b"{not json", HEADERS),  # 400
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0], "k": 2}', HEADERS),  # wrong dimension
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0, 0], "k": 0}', HEADERS),  # 422
    ("/v1/libraries/missing/search", b'{"embedding": [1, 0, 0]}', HEADERS),  # 404
    ("/v1/libraries/hot/search/batch", b'{"queries": []}', HEADERS),
    ("/v1/embed", b'{"texts": [" "]}', HEADERS),
    ("/v1/libraries/sink/documents", b'{"id": "f", "embedding": [0, 1]}', HEADERS),  # wrong dimension
    ("/v1/libraries/sink/documents/batch", b'{"documents": [{"id": "g"}]}', HEADERS),  # no text, no vector
    ("/v1/libraries/missing/documents", b'{"id": "h", "embedding": [0, 1, 0]}', HEADERS),
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0, 0]}', {"Origin": ORIGIN}),  # 401: no key
    ("/v1/libraries/hot/search", b'{"embedding": [1, 0, 0]}', {**HEADERS, "X-Request-Timeout-Ms": "soon"}),
]


def answer(http: httpx.Client, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    response = http.post(path, content=body, headers={"Content-Type": "application/json", **headers})
    parsed = response.json() if response.content else None
    if isinstance(parsed, dict):
        parsed.pop("took_ms", None)
    return {
        "status": response.status_code,
        "body": parsed,
        "headers": {name: response.headers.get(name) for name in COMPARED if name != "content-length"},
        "timing": [name in response.headers for name in TIMING],
    }


def declared_too_large(port: int) -> bytes:
    """A search whose declared body is over the limit (32 MiB): refused before any of it is read."""
    head = (
        f"POST /v1/libraries/hot/search HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Length: {2**25 + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        return sock.recv(65536)


def route_counts(metrics: str) -> dict[str, float]:
    """Requests counted per (route, status) on /metrics."""
    pattern = re.compile(r'^arrwdb_http_requests_total\{method="POST",route="([^"]+)",status="(\d+)"\} (\S+)$', re.M)
    return {f"{route} {status}": float(n) for route, status, n in pattern.findall(metrics)}


@pytest.fixture
def hot_server(start_server: Any) -> Any:
    server = start_server(api_keys=KEY, cors_origins=ORIGIN)
    with server.client(KEY) as client:
        client.create_library("hot", dimension=3)
        client.add_documents(
            "hot",
            [
                {"id": "a", "text": "a red apple", "embedding": [1, 0, 0], "metadata": {"colour": "red"}},
                {"id": "b", "text": "a green pear", "embedding": [0, 1, 0], "metadata": {"colour": "green"}},
                {"id": "c", "text": "a red cherry", "embedding": [0.9, 0.1, 0], "metadata": {"colour": "red"}},
            ],
        )
        client.create_library("words")
        client.create_library("sink", dimension=3)
        client.create_library("sink-words")
        client.add_documents("words", [{"id": "fruit", "text": "an apple"}, {"id": "car", "text": "a truck"}])
    return server


def test_hot_path_answers_as_the_full_stack_does(hot_server: Any) -> None:
    assert hot_server.app.hot_path is not None
    with httpx.Client(base_url=hot_server.url, timeout=60) as http:
        hot = [answer(http, *request) for request in REQUESTS]
        hot_too_large = declared_too_large(hot_server.port)
        counted = route_counts(http.get("/metrics").text)
        hot_server.app.hot_path = None  # every request now takes FastAPI's routing and middlewares
        full = [answer(http, *request) for request in REQUESTS]
        full_too_large = declared_too_large(hot_server.port)
    for request, via_hot, via_full in zip(REQUESTS, hot, full, strict=True):
        assert via_hot == via_full, request[0]
    statuses = [a["status"] for a in hot]
    assert statuses == [200, 200, 200, 200, 200, 201, 201, 400, 422, 422, 404, 422, 422, 422, 422, 404, 401, 400]
    assert hot_too_large.startswith(b"HTTP/1.1 413") and b'"payload_too_large"' in hot_too_large
    assert hot_too_large.split(b"\r\ndate:")[0] == full_too_large.split(b"\r\ndate:")[0]
    assert hot[0]["headers"]["access-control-allow-origin"] == ORIGIN
    assert hot[0]["timing"] == [True, True, True]
    assert [h["document_id"] for h in hot[1]["body"]["results"]] == ["fruit", "car"]
    assert [h["document_id"] for h in hot[2]["body"]["results"]] == ["a", "c"]
    # The hot path's answers were counted under their route templates, errors included.
    assert counted["/v1/libraries/{library}/search 200"] == 3
    assert counted["/v1/libraries/{library}/search/batch 200"] == 1
    assert counted["/v1/embed 200"] == 1
    assert counted["/v1/libraries/{library}/documents 201"] == 1
    assert counted["/v1/libraries/{library}/documents/batch 201"] == 3  # the fixture's two imports too
    assert counted["/v1/libraries/{library}/search 404"] == 1
    assert counted["/v1/libraries/{library}/search 413"] == 1


def test_an_unexpected_error_on_the_hot_path_is_a_500_with_the_error_body(hot_server: Any, monkeypatch) -> None:
    def bug(*args: Any) -> None:
        raise RuntimeError("a bug in the handler")

    with httpx.Client(base_url=hot_server.url, timeout=60) as http:
        with monkeypatch.context() as patched:
            patched.setattr("arrwdb.server.search.search_input", bug)
            response = http.post("/v1/libraries/hot/search", json={"embedding": [1, 0, 0]}, headers=HEADERS)
        assert response.status_code == 500
        assert response.json() == {"error": {"type": "internal_error", "message": "internal error; see the server log"}}
        assert response.headers["access-control-allow-origin"] == ORIGIN
        again = http.post("/v1/libraries/hot/search", json={"embedding": [1, 0, 0]}, headers=HEADERS)
        assert again.status_code == 200 and again.json()["results"][0]["document_id"] == "a"
