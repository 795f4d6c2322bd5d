"""The benchmarks' raw keep-alive client: answers read by Content-Length, idle-closed connections reopened."""

from __future__ import annotations

import socket
import threading

import pytest

from arrwdb.bench.rawhttp import RawConnection, encode_request


def one_shot_server(answers: int) -> tuple[int, threading.Thread]:
    """Answers each connection's first request, then closes it as an idle keep-alive timeout would."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            for n in range(answers):
                conn, _ = listener.accept()
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(4096)
                    body = f'{{"n": {n}}}'.encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_a_connection_closed_while_idle_is_reopened_once() -> None:
    port, thread = one_shot_server(answers=3)
    request = encode_request("GET", "127.0.0.1", "/x")
    with RawConnection("127.0.0.1", port, timeout=10) as conn:
        assert [conn.ok(request) for _ in range(3)] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    thread.join(timeout=10)


def test_only_loopback_is_ever_a_target() -> None:
    with pytest.raises(ValueError):
        RawConnection("192.0.2.1", 80)
