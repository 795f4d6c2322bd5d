"""Hand-written hostile input: NaN and infinities, huge dimensions and numbers, deep and wide filters,
huge metadata, odd unicode, malformed and oversize bodies, odd paths and headers.  The answer is
always a 4xx in the API.md error shape (or a success where the input is odd but valid), never a 5xx,
and the server keeps serving."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import numpy as np
import pytest

from arrwdb.config import MIB
from arrwdb.records import ChunkRecord, DocumentRecord, Upsert
from arrwdb.store.store import Store, new_library_record
from tests.harness import ServerThread

DIM = 3


@pytest.fixture(scope="module")
def hostile(minilm, tmp_path_factory):
    server = ServerThread(tmp_path_factory.mktemp("hostile"), minilm).start()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        http.post("/v1/libraries", json={"name": "v", "dimension": DIM}).raise_for_status()
        http.post("/v1/libraries", json={"name": "t"}).raise_for_status()
        http.post("/v1/libraries", json={"name": "big", "dimension": 4096, "metric": "ip"}).raise_for_status()
        http.post("/v1/libraries/v/documents", json={"id": "base", "embedding": [1, 2, 3]}).raise_for_status()
    yield server
    server.stop()


def nest(depth: int, leaf: str = '{"a": 1}') -> bytes:
    return ('{"embedding": [1, 2, 3], "filter": ' + '{"$not": ' * depth + leaf + "}" * depth + "}").encode()


def search(body: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/libraries/v/search", body


def doc(**fields: Any) -> tuple[str, str, Any]:
    return "POST", "/v1/libraries/v/documents", {"embedding": [1, 2, 3], **fields}


# (request, statuses allowed).  A body given as bytes is sent as is; anything else as JSON.
CASES: dict[str, tuple[tuple[str, str, Any], set[int]]] = {
    # NaN, infinities, numbers out of range
    "nan in an embedding": (("POST", "/v1/libraries/v/documents", b'{"embedding": [1, 2, NaN]}'), {400, 422}),
    "infinity in an embedding": (("POST", "/v1/libraries/v/documents", b'{"embedding": [1, Infinity, 2]}'), {400, 422}),
    "1e999 in an embedding": (("POST", "/v1/libraries/v/documents", b'{"embedding": [1, 1e999, 2]}'), {422}),
    "beyond float32": (doc(embedding=[1e39, 1, 1]), {422}),
    "norm overflows float32 scores": (doc(embedding=[1e30, 1e30, 1e30]), {422}),
    "subnormal cosine vector": (doc(embedding=[1e-45, 0, 0]), {422}),
    "zero cosine vector": (doc(embedding=[0, 0, 0]), {422}),
    "nan k": (("POST", "/v1/libraries/v/search", b'{"embedding": [1, 2, 3], "k": NaN}'), {400, 422}),
    "float k": (search({"embedding": [1, 2, 3], "k": 1.5}), {422}),
    "string k": (search({"embedding": [1, 2, 3], "k": "5"}), {422}),
    "bool k": (search({"embedding": [1, 2, 3], "k": True}), {422}),
    "huge k": (search({"embedding": [1, 2, 3], "k": 10**30}), {422}),
    "nan in metadata": (
        ("POST", "/v1/libraries/v/documents", b'{"embedding": [1,2,3], "metadata": {"x": NaN}}'),
        {400, 422},
    ),
    "2^70 in metadata": (doc(metadata={"n": 2**70}), {422}),
    "-2^63-1 in metadata": (doc(metadata={"n": -(2**63) - 1}), {422}),
    # A filter may compare with any integer (none matches a stored one): keying it must not fail (500).
    "2^70 in a filter": (search({"embedding": [1, 2, 3], "filter": {"n": 2**70}}), {200}),
    "2^70 in a filter $in": (search({"embedding": [1, 2, 3], "filter": {"n": {"$in": [1, 2**70]}}}), {200}),
    "2^70 in a filter $lt": (search({"embedding": [1, 2, 3], "filter": {"n": {"$lt": 2**70}}}), {200}),
    "inf in a filter": (
        ("POST", "/v1/libraries/v/search", b'{"embedding": [1,2,3], "filter": {"a": {"$lt": 1e400}}}'),
        {422},
    ),
    "huge ef_search": (search({"embedding": [1, 2, 3], "params": {"ef_search": 2**70}}), {422}),
    # dimensions
    "dimension 4097": (("POST", "/v1/libraries", {"name": "d1", "dimension": 4097}), {422}),
    "dimension 10^40": (("POST", "/v1/libraries", {"name": "d2", "dimension": 10**40}), {422}),
    "dimension 0": (("POST", "/v1/libraries", {"name": "d3", "dimension": 0}), {422}),
    "dimension -1": (("POST", "/v1/libraries", {"name": "d4", "dimension": -1}), {422}),
    "dimension with a fraction": (("POST", "/v1/libraries", {"name": "d5", "dimension": 3.5}), {422}),
    "index param 2^70": (
        ("POST", "/v1/libraries", {"name": "d6", "index_type": "hnsw", "index_params": {"m": 2**70}}),
        {422},
    ),
    "a million numbers": (doc(embedding=[0.5] * 1_000_000), {422}),
    "nested embedding": (doc(embedding=[[1, 2, 3]]), {422}),
    "a 4096-d vector": (("POST", "/v1/libraries/big/documents", {"id": "wide", "embedding": [0.25] * 4096}), {201}),
    "a 4096-d query": (("POST", "/v1/libraries/big/search", {"embedding": [0.25] * 4096, "k": 1}), {200}),
    "text on a library of another dimension": (("POST", "/v1/libraries/v/documents", {"text": "words"}), {422}),
    # filters: deep, wide, odd
    "filter depth 32": (("POST", "/v1/libraries/v/search", nest(31)), {200}),
    "filter depth 33": (("POST", "/v1/libraries/v/search", nest(40)), {422}),
    "filter depth 100000": (("POST", "/v1/libraries/v/search", nest(100_000)), {400, 422}),
    "JSON depth 100000": (("POST", "/v1/libraries/v/search", b"[" * 100_000 + b"]" * 100_000), {400, 422}),
    "filter with 5000 children": (
        search({"embedding": [1, 2, 3], "filter": {"$or": [{"a": i} for i in range(5000)]}}),
        {422},
    ),
    "$in with 5000 values": (search({"embedding": [1, 2, 3], "filter": {"a": {"$in": list(range(5000))}}}), {422}),
    "empty $and": (search({"embedding": [1, 2, 3], "filter": {"$and": []}}), {422}),
    "unknown operator": (search({"embedding": [1, 2, 3], "filter": {"a": {"$regex": ".*"}}}), {422}),
    "operator at the top": (search({"embedding": [1, 2, 3], "filter": {"$gt": 1}}), {422}),
    "null in a filter": (search({"embedding": [1, 2, 3], "filter": {"a": None}}), {422}),
    "object value in a filter": (search({"embedding": [1, 2, 3], "filter": {"a": {"b": 1}}}), {422}),
    "filter not an object": (search({"embedding": [1, 2, 3], "filter": [1]}), {422}),
    "field name of 100k chars": (search({"embedding": [1, 2, 3], "filter": {"f" * 100_000: 1}}), {422}),
    # metadata
    "257 metadata keys": (doc(metadata={f"k{i}": i for i in range(257)}), {422}),
    "a 70k-char metadata value": (doc(metadata={"k": "x" * 70_000}), {422}),
    "a 1025-item metadata list": (doc(metadata={"k": ["x"] * 1025}), {422}),
    "nested metadata": (doc(metadata={"k": {"deep": 1}}), {422}),
    "a list of numbers in metadata": (doc(metadata={"k": [1, 2]}), {422}),
    "null metadata value": (doc(metadata={"k": None}), {422}),
    "a $ metadata key": (doc(metadata={"$gt": 1}), {422}),
    "an empty metadata key": (doc(metadata={"": 1}), {422}),
    "a 300-char metadata key": (doc(metadata={"k" * 300: 1}), {422}),
    "metadata not an object": (doc(metadata=[1, 2]), {422}),
    "a 20 MB title": (doc(id="huge-title", title="t" * (20 * MIB)), {201}),
    # odd unicode
    "lone surrogate in text": (("POST", "/v1/libraries/t/documents", b'{"text": "a\\ud800b"}'), {400, 422}),
    "lone low surrogate in a title": (
        ("POST", "/v1/libraries/v/documents", b'{"embedding": [1,2,3], "title": "\\udfff"}'),
        {400, 422},
    ),
    "lone surrogate in a metadata key": (
        ("POST", "/v1/libraries/v/documents", b'{"embedding": [1,2,3], "metadata": {"\\ud800": 1}}'),
        {400, 422},
    ),
    "lone surrogate in a query": (("POST", "/v1/libraries/t/search", b'{"query": "\\ud800"}'), {400, 422}),
    "lone surrogate in a library name": (("POST", "/v1/libraries", b'{"name": "\\ud800"}'), {400, 422}),
    "invalid UTF-8": (("POST", "/v1/libraries/v/documents", b'{"embedding": [1,2,3], "title": "\xc0\xaf\xff"}'), {400}),
    "a byte order mark": (("POST", "/v1/libraries/v/documents", b'\xef\xbb\xbf{"embedding": [1,2,3]}'), {400}),
    "NUL in an id": (doc(id="a\x00b"), {422}),
    "RTL and emoji in an id": (doc(id="\u202eabc\U0001f600"), {422}),
    "unicode library name": (("POST", "/v1/libraries", {"name": "bibliothèque"}), {422}),
    "only NUL bytes as a query": (("POST", "/v1/libraries/t/search", {"query": "\x00\x00\x00"}), {200}),
    "only zero-width text": (("POST", "/v1/libraries/t/documents", {"text": "\u200b\u200c\ufeff"}), {201, 422}),
    "whitespace-only text": (("POST", "/v1/libraries/t/documents", {"text": " \n\t "}), {422}),
    "empty embed text": (("POST", "/v1/embed", {"texts": ["ok", ""]}), {422}),
    "1001 embed texts": (("POST", "/v1/embed", {"texts": ["x"] * 1001}), {422}),
    "no embed texts": (("POST", "/v1/embed", {"texts": []}), {422}),
    # bodies
    "empty body": (("POST", "/v1/libraries/v/search", b""), {400}),
    "truncated JSON": (("POST", "/v1/libraries/v/search", b'{"embedding": [1,'), {400}),
    "a JSON array": (("POST", "/v1/libraries/v/search", b"[1, 2, 3]"), {422}),
    "a JSON string": (("POST", "/v1/libraries/v/search", b'"query"'), {422}),
    "JSON null": (("POST", "/v1/libraries/v/documents", b"null"), {422}),
    "unknown field": (search({"embedding": [1, 2, 3], "filtr": {"a": 1}}), {422}),
    "both query and embedding": (("POST", "/v1/libraries/t/search", {"query": "a", "embedding": [1] * 384}), {422}),
    "neither query nor embedding": (search({"k": 1}), {422}),
    "1001 documents": (
        ("POST", "/v1/libraries/v/documents/batch", {"documents": [{"embedding": [1, 2, 3]}] * 1001}),
        {422},
    ),
    "1001 queries": (("POST", "/v1/libraries/v/search/batch", {"queries": [{"embedding": [1, 2, 3]}] * 1001}), {422}),
    # retrieval options (API.md, Additions: Search)
    "unknown mode": (search({"embedding": [1, 2, 3], "mode": "fuzzy"}), {422}),
    "unknown fusion": (
        ("POST", "/v1/libraries/t/search", {"query": "a", "mode": "hybrid", "fusion": {"method": "x"}}),
        {422},
    ),
    "fusion of 3 weights": (
        search({"embedding": [1, 2, 3], "keywords": "a", "mode": "hybrid", "fusion": {"weights": [1, 1, 1]}}),
        {422},
    ),
    "k + offset past 1000 (a page ends at rank 1000)": (
        search({"embedding": [1, 2, 3], "k": 1000, "offset": 1}),
        {200},
    ),
    "offset 10^30": (search({"embedding": [1, 2, 3], "offset": 10**30}), {422}),
    "candidates below k (counted as k)": (
        search({"embedding": [1, 2, 3], "keywords": "a", "mode": "hybrid", "candidates": 3}),
        {200},
    ),
    "score_threshold NaN": (
        ("POST", "/v1/libraries/v/search", b'{"embedding": [1,2,3], "score_threshold": NaN}'),
        {400, 422},
    ),
    "group_by on a missing field": (search({"embedding": [1, 2, 3], "group_by": "nope"}), {422}),
    "group_size 10^30": (search({"embedding": [1, 2, 3], "group_by": "document_id", "group_size": 10**30}), {422}),
    "group_by document_id": (search({"embedding": [1, 2, 3], "group_by": "document_id"}), {200}),
    "FTS5 syntax as keywords": (
        ("POST", "/v1/libraries/t/search", {"keywords": 'a" OR NEAR(b *', "mode": "keyword"}),
        {200},
    ),
    "NUL keywords": (("POST", "/v1/libraries/t/search", {"keywords": "\x00", "mode": "keyword"}), {200}),
    "keyword search of a library without texts": (search({"keywords": "x", "mode": "keyword"}), {200}),
    "hybrid by embedding and keywords": (search({"embedding": [1, 2, 3], "keywords": "x", "mode": "hybrid"}), {200}),
    "keyword mode with an embedding": (search({"embedding": [1, 2, 3], "mode": "keyword"}), {422}),
    # document edits (API.md, Additions: Documents); nothing changes: test_failed_edits_changed_nothing
    "PATCH of an unknown document": (("PATCH", "/v1/libraries/v/documents/nope", {"title": "x"}), {404}),
    "PATCH of the text": (("PATCH", "/v1/libraries/v/documents/base", {"text": "x"}), {422}),
    "PATCH with NaN metadata": (("PATCH", "/v1/libraries/v/documents/base", b'{"metadata": {"x": NaN}}'), {400, 422}),
    "PATCH with nested metadata": (("PATCH", "/v1/libraries/v/documents/base", {"metadata": {"x": {"y": 1}}}), {422}),
    "delete with ids and filter": (
        ("POST", "/v1/libraries/v/documents/delete", {"ids": ["base"], "filter": {"a": 1}}),
        {422},
    ),
    "delete with neither": (("POST", "/v1/libraries/v/documents/delete", {}), {422}),
    "delete by an empty filter": (("POST", "/v1/libraries/v/documents/delete", {"filter": {}}), {422}),
    "delete 1001 ids": (("POST", "/v1/libraries/v/documents/delete", {"ids": ["base"] * 1001}), {422}),
    "delete by a bad filter": (("POST", "/v1/libraries/v/documents/delete", {"filter": {"$gt": 1}}), {422}),
    # paths, query strings, headers
    "NUL in a path": (("GET", "/v1/libraries/%00", None), {404}),
    "invalid UTF-8 in a path": (("GET", "/v1/libraries/%ff%fe/documents", None), {404}),
    "a surrogate in a path": (("GET", "/v1/libraries/v/documents/%ed%a0%80", None), {404}),
    "a 60k-char library name": (("GET", "/v1/libraries/" + "x" * 60_000, None), {404}),
    "an unknown route": (("GET", "/v2/everything", None), {404}),
    "a wrong method": (("PUT", "/v1/libraries", None), {405}),
    "limit=0": (("GET", "/v1/libraries/v/documents?limit=0", None), {422}),
    "limit=1e3": (("GET", "/v1/libraries/v/documents?limit=1e3", None), {422}),
    "limit=10^30": (("GET", "/v1/libraries/v/documents?limit=" + "9" * 30, None), {422}),
    "a garbage cursor": (("GET", "/v1/libraries/v/documents?cursor=%ff%00", None), {400}),
    "a 50k-char cursor": (("GET", "/v1/libraries/v/documents?cursor=" + "A" * 50_000, None), {400}),
}
HEADER_CASES: dict[str, tuple[dict[str, str], set[int]]] = {
    "timeout nan": ({"X-Request-Timeout-Ms": "nan"}, {400}),
    "timeout -1": ({"X-Request-Timeout-Ms": "-1"}, {400}),
    "timeout text": ({"X-Request-Timeout-Ms": "soon"}, {400}),
    "timeout inf": ({"X-Request-Timeout-Ms": "inf"}, {200}),
    "timeout 1e400": ({"X-Request-Timeout-Ms": "1e400"}, {200}),
    # A deadline the client sets already past is the one 5xx it may ask for: 504 "deadline passed".
    "timeout 1e-9": ({"X-Request-Timeout-Ms": "1e-9"}, {200, 408, 504}),
    "a 10 kB bearer token": ({"Authorization": "Bearer " + "k" * 10_000}, {200}),
    "content type text/plain": ({"Content-Type": "text/plain"}, {200}),
}


def error_shaped(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error.get("type"), str) and isinstance(error.get("message"), str)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_clean_answer(hostile, name):
    (method, path, body), allowed = CASES[name]
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    headers = {"Content-Type": "application/json"} if isinstance(body, bytes) else {}
    with httpx.Client(base_url=hostile.url, timeout=120) as http:
        if len(path) > 60_000:  # longer than httpx will send: a raw request
            response = raw_request(hostile.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert response.split(b" ")[1] in {str(s).encode() for s in allowed}, response[:200]
            return
        response = http.request(method, path, headers=headers, **kwargs)
        assert response.status_code in allowed, (name, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert error_shaped(response), response.text[:300]
        assert http.get("/health").status_code == 200


def test_failed_edits_changed_nothing(hostile):
    """After every case above: the document the failed PATCHes and deletes aimed at is as it was."""
    got = httpx.get(f"{hostile.url}/v1/libraries/v/documents/base").json()
    assert got["title"] is None and got["metadata"] == {} and got["embedding"] == [1, 2, 3]


@pytest.mark.parametrize("name", list(HEADER_CASES))
def test_hostile_headers_get_a_clean_answer(hostile, name):
    headers, allowed = HEADER_CASES[name]
    response = httpx.post(f"{hostile.url}/v1/libraries/v/search", content=b'{"embedding": [1, 2, 3]}', headers=headers)
    assert response.status_code in allowed, response.text
    if response.status_code >= 400:
        assert error_shaped(response)


def test_odd_unicode_round_trips_exactly(hostile):
    odd = {
        "title": "\u202eevil\u202c \u0301\u0301 \U0001f600 \x00 \ufeff",
        "text": "NUL\x00inside, RTL \u05e9\u05dc\u05d5\u05dd, combining e\u0301, astral \U0001d11e",
        "metadata": {"\x00key": "\x00value", "\u05e9": ["\U0001f600", ""], "e\u0301": "\u202e"},
    }
    with httpx.Client(base_url=hostile.url, timeout=60) as http:
        assert http.post("/v1/libraries/t/documents", json={"id": "odd", **odd}).status_code == 201
        got = http.get("/v1/libraries/t/documents/odd").json()
        assert {k: got[k] for k in odd} == odd
        hits = http.post("/v1/libraries/t/search", json={"query": odd["text"], "k": 1}).json()["results"]
        assert hits[0]["document_id"] == "odd" and hits[0]["text"] == odd["text"]
        found = http.post("/v1/libraries/t/search", json={"query": "x", "filter": {"\x00key": "\x00value"}})
        assert [h["document_id"] for h in found.json()["results"]] == ["odd"]


def raw_request(port: int, data: bytes, read_timeout: float = 30.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything
        return sock.recv(65536)


def test_oversize_bodies_get_413(hostile):
    limit = 32 * MIB
    # Declared too large: refused before a byte of the body is read.
    head = f"POST /v1/libraries/v/documents HTTP/1.1\r\nHost: x\r\nContent-Length: {limit + 1}\r\n\r\n"
    assert raw_request(hostile.port, head.encode()).startswith(b"HTTP/1.1 413")
    # Chunked, without a length: counted while it streams, refused past the limit.
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/libraries/v/documents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (MIB, b" " * MIB)
        try:
            for _ in range(40):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    # A body shorter than declared, then the client gives up: no crash, the server keeps serving.
    head = "POST /v1/libraries/v/documents HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=10) as sock:
        sock.sendall(head.encode())
    assert httpx.get(f"{hostile.url}/health").status_code == 200
    # Garbage instead of HTTP.
    assert raw_request(hostile.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_a_failing_write_leaves_no_transaction_open(tmp_path):
    """A write that raises something unexpected inside a group commit (a bug, not input) must not leave
    the writer connection inside its transaction: the next commit has to work."""
    store = Store(tmp_path / "s.sqlite3")
    store.create_library(new_library_record("lib", "t", "lib", DIM, "brute_force", "l2", {}))
    vector = np.ones(DIM, dtype=np.float32)

    def upsert(doc_id: str, metadata: dict) -> Upsert:
        return Upsert(DocumentRecord(doc_id, None, None, metadata, None, (ChunkRecord(0, 0, 0, vector),)))

    with pytest.raises(TypeError):
        store.commit_writes([("lib", [upsert("bad", {"not json": {1, 2}})])])
    results = store.commit_writes([("lib", [upsert("good", {"k": 1})])])
    assert not isinstance(results[0], Exception)
    assert store.get_document("lib", "good", DIM)["metadata"] == {"k": 1}
    store.close()
