"""One blocking HTTP/1.1 keep-alive connection for sequential benchmark requests.

Single-client latency is the server's figure only if the client costs next to nothing: httpx spends
about 0.5 ms of Python per request, as much as a small exact search.  This sends pre-encoded request
bytes (``loadgen.encode_post``) and reads each answer by its Content-Length (arrwdb, Chroma and
Infinity all send one): tens of microseconds.  Loopback only.
"""

from __future__ import annotations

import socket
import time
from types import TracebackType

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class HttpError(RuntimeError):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class RawConnection:
    def __init__(self, host: str, port: int, timeout: float = 300.0) -> None:
        if host not in LOOPBACK:
            raise ValueError("benchmark traffic only ever goes to a loopback address")
        self.host = host
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        return self._sock

    def _read_until(self, marker: bytes) -> bytes:
        sock = self._connect()
        while marker not in self._buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, length: int) -> bytes:
        sock = self._connect()
        parts = [self._buffer[:length]]
        have = len(parts[0])
        self._buffer = self._buffer[length:]
        while have < length:
            chunk = sock.recv(min(1 << 20, length - have))
            if not chunk:
                raise ConnectionError("server closed the connection")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one pre-encoded request; return (status, lower-cased headers, body).

        A server may close a keep-alive connection that sat idle (uvicorn after 5 s, e.g. while a load
        run used other connections).  If a reused connection fails before any byte of the answer, the
        request never reached the application: reconnect and send it once more, as HTTP clients do."""
        reused = self._sock is not None
        try:
            self._connect().sendall(raw)
            head = self._read_until(b"\r\n\r\n")
        except (ConnectionError, BrokenPipeError) as exc:
            if not reused or self._buffer:
                raise
            self.close()
            try:
                self._connect().sendall(raw)
                head = self._read_until(b"\r\n\r\n")
            except OSError:
                raise exc from None
        return self._finish(head)

    def _finish(self, head: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            raise ConnectionError("chunked responses are not supported by this benchmark client")
        body = self._read_exactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, headers, body

    def timed(self, raw: bytes) -> tuple[float, int, bytes]:
        """(milliseconds, status, body) of one request."""
        started = time.perf_counter()
        status, _, body = self.request(raw)
        return (time.perf_counter() - started) * 1000.0, status, body

    def ok(self, raw: bytes) -> bytes:
        status, _, body = self.request(raw)
        if not 200 <= status < 300:
            raise HttpError(status, body)
        return body

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def encode_request(method: str, host: str, path: str, body: bytes = b"") -> bytes:
    """Any method (loadgen.encode_post only makes POSTs)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body
