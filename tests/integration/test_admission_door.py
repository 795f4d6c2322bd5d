"""Overload refused at the door: the HTTP protocol writes a 429 as soon as a request's headers are
parsed, within HTTP/1.1's rules (keep-alive, pipelining, ``Connection: close``), and the door's
answer is final: a request it admits is not refused later."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from arrwdb.server.admission import AdmissionDoor, AdmissionGate
from tests.integration.test_batching import block_worker, metric

SEARCH = b'{"embedding": [1, 2, 3, 4], "k": 1}'


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join([*head, *extra]) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (by its Content-Length); bytes past it stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    end = len(head) + 4 + int(headers.get("content-length", "0"))
    while len(buffer) < end:
        buffer += sock.recv(65536)
    body = bytes(buffer[len(head) + 4 : end])
    del buffer[:end]
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def full_server(start_server: Any) -> Iterator[Any]:
    """A server whose queue is full: the worker blocked, one search on it and one queued (max_queue 2)."""
    server = start_server(max_queue=2)
    with server.client() as client:
        client.create_library("o", dimension=4)
        client.add_document("o", {"id": "a", "embedding": [1, 2, 3, 4]})
    job = block_worker(server)
    waiting: list[httpx.Response] = []

    def fill() -> None:
        async def search() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                waiting.append(await c.post("/v1/libraries/o/search", content=SEARCH))

        async def two() -> None:
            await asyncio.gather(search(), search())

        asyncio.run(two())

    filler = threading.Thread(target=fill)
    filler.start()
    for _ in range(500):  # at most 5 s
        if server.engine.scheduler.full:
            break
        time.sleep(0.01)
    assert server.engine.scheduler.full
    yield server
    job.release.set()
    filler.join(30)
    assert [r.status_code for r in waiting] == [200, 200]  # what was admitted is served


@pytest.fixture
def gate_saw(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that reached the app's admission gate (past the protocol)."""
    seen: list[str] = []
    original = AdmissionGate.__call__

    async def spied(self: AdmissionGate, scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(AdmissionGate, "__call__", spied)
    return seen


def test_refusals_keep_the_connection_and_its_order(full_server: Any, gate_saw: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", full_server.port), timeout=10) as sock:
        buffer = bytearray()
        # Three requests in one write (pipelined): two refused at the door, then one the app answers.
        sock.sendall(post("/v1/libraries/o/search", SEARCH) + post("/v1/embed", b'{"texts": ["hi"]}'))
        sock.sendall(b"GET /v1/libraries/o HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answers = [read_response(sock, buffer) for _ in range(3)]
        assert [status for status, _, _ in answers] == [429, 429, 200]
        for _, headers, body in answers[:2]:
            assert json.loads(body)["error"]["type"] == "overloaded"
            assert headers["retry-after"] == "1" and headers["content-type"] == "application/json"
        assert json.loads(answers[2][2])["name"] == "o"
        # The connection is still good for the next request (the refused bodies were consumed).
        sock.sendall(post("/v1/libraries/o/search", SEARCH))
        assert read_response(sock, buffer)[0] == 429
    # The refused requests never reached the app; the library read did.
    assert gate_saw == ["/v1/libraries/o"]
    metrics = httpx.get(f"{full_server.url}/metrics").text
    assert metric(metrics, "arrwdb_requests_dropped_total", 'reason="rejected_queue_full"') == 3
    for route, count in (("/v1/libraries/{library}/search", 2), ("/v1/embed", 1)):
        assert metric(metrics, "arrwdb_http_requests_total", f'method="POST",route="{route}",status="429"') == count


def test_a_refusal_with_connection_close_closes(full_server: Any) -> None:
    with socket.create_connection(("127.0.0.1", full_server.port), timeout=10) as sock:
        sock.sendall(post("/v1/libraries/o/search", SEARCH, "Connection: close"))
        buffer = bytearray()
        status, headers, _ = read_response(sock, buffer)
        assert (status, headers["connection"]) == (429, "close")
        assert sock.recv(1024) == b""  # the server closed its side


def test_requests_the_protocol_leaves_to_the_app_are_refused_there(full_server: Any, gate_saw: list[str]) -> None:
    # A client that asks for 100 Continue may withhold its body once answered: the protocol leaves its
    # request to uvicorn's usual path, and the app's gate refuses it with the same answer.
    with socket.create_connection(("127.0.0.1", full_server.port), timeout=10) as sock:
        sock.sendall(post("/v1/libraries/o/search", SEARCH, "Expect: 100-continue"))
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        assert status == 429 and headers["retry-after"] == "1"
        assert json.loads(body)["error"]["type"] == "overloaded"
    assert gate_saw == ["/v1/libraries/o/search"]


def test_only_reads_of_the_device_are_refused_at_the_door(full_server: Any) -> None:
    door: AdmissionDoor = full_server.app.state.admission_door
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/libraries/o/search"}
    assert door.refusal(scope) is not None  # full
    reads: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/libraries/o/documents"}
    assert door.refusal(reads) is None  # inserts are admitted by the write queue, not here
    assert reads["arrwdb.admission_ticket"] is None  # asked, and no place held
