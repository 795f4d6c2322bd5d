"""A lean closed-loop HTTP/1.1 load generator over keep-alive connections.

httpx costs about 0.5 ms of client CPU a request; on a 2-core machine that shares its cores with the
server that would measure the client.  Here each virtual client writes pre-encoded request bytes and
reads the answer by its Content-Length (arrwdb never uses chunked encoding): about 30 us a request.
Traffic goes to loopback only, and every run is bounded in time and in request count.

The generator's cyclic GC is off while it runs (``quiet_gc``): a benchmark process that holds its
request lists and earlier results has hundreds of thousands of objects, and a full collection in the
middle of a run stops every virtual client at once, which the answers' latencies then show as the
server's: the tail of a fast answer (a 429 under overload) is where it shows most.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import numpy as np

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class LoadResult:
    clients: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)  # of successful (2xx) requests
    rejected_ms: list[float] = field(default_factory=list)  # of 429 answers
    statuses: Counter[int] = field(default_factory=Counter)
    batch_sizes: list[int] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    items_ok: int = 0  # queries (or texts) carried by the successful requests: one each unless told

    def record(self, status: int, latency_ms: float, items: int = 1) -> None:
        if 200 <= status < 300:
            self.latencies_ms.append(latency_ms)
            self.items_ok += items
        elif status == 429:
            self.rejected_ms.append(latency_ms)
        self.statuses[status] += 1

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        rejected = np.asarray(self.rejected_ms) if self.rejected_ms else np.zeros(1)
        return {
            "rejected_p50_ms": float(np.percentile(rejected, 50)),
            "rejected_p99_ms": float(np.percentile(rejected, 99)),
            "clients": self.clients,
            "requests": int(sum(self.statuses.values())),
            "ok": self.ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "qps": self.ok / self.seconds if self.seconds else 0.0,  # requests per second
            "items": self.items_ok,
            "items_per_s": self.items_ok / self.seconds if self.seconds else 0.0,  # qps x items per request
            "mean_ms": float(lat.mean()),
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)),
            "mean_batch_size": float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0,
            "mean_queue_ms": float(np.mean(self.queue_ms)) if self.queue_ms else 0.0,
            "mean_compute_ms": float(np.mean(self.compute_ms)) if self.compute_ms else 0.0,
        }


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose ``key`` is the median (the lower middle one of an even count), with every
    round's ``key`` beside it as ``rounds_<key>``: how benches that measure a point several times,
    interleaved with the points they compare it with, report it."""
    ranked = sorted(rounds, key=lambda point: float(point[key]))
    return {**ranked[(len(ranked) - 1) // 2], f"rounds_{key}": [float(point[key]) for point in rounds]}


def _check_loopback(host: str) -> None:
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise ValueError("load is only ever sent to a loopback address")


def float32_base64(vector: np.ndarray) -> str:
    """A vector as base64 of its little-endian float32 bytes (arrwdb's ``embedding_base64``, Chroma's
    HTTP embeddings)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()


def encode_post(host: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    if length:
        await reader.readexactly(length)
    return status, headers


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No cyclic GC inside the block (after one collection before it); as it was afterwards.  A run is
    bounded in time, so the cycles it leaves wait for the next collection."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _without_gc(run: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``run`` inside ``quiet_gc``: the collection before it happens before its clock starts."""

    @functools.wraps(run)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        with quiet_gc():
            return await run(*args, **kwargs)

    return wrapped


@_without_gc
async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    clients: int,
    seconds: float,
    warmup: float = 1.0,
    max_requests: int = 1_000_000,
    items: Sequence[int] | None = None,
) -> LoadResult:
    """``clients`` connections, each sending the next request as soon as its previous answer came.
    ``items[i]`` is how many queries (or texts) ``requests[i]`` carries (one each when None): the
    summary's ``items_per_s`` counts those, its ``qps`` counts requests."""
    _check_loopback(host)
    if items is not None and len(items) != len(requests):
        raise ValueError("items must give one count per request")
    result = LoadResult(clients=clients, seconds=seconds)
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    counter = 0

    async def client(offset: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection(host, port)
        index = offset
        try:
            while counter < max_requests:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                slot = index % len(requests)
                writer.write(requests[slot])
                index += clients
                counter += 1
                status, headers = await _read_response(reader)
                done = time.perf_counter()
                # Throughput counts what completed inside the window (also requests sent during the
                # warm-up: at 256 clients unbatched, one request can outlast the whole window).
                if measure_from <= done <= stop_at:
                    result.record(status, (done - sent) * 1000.0, 1 if items is None else items[slot])
                    if b"x-batch-size" in headers:
                        result.batch_sizes.append(int(headers[b"x-batch-size"]))
                        result.queue_ms.append(float(headers[b"x-queue-ms"]))
                        result.compute_ms.append(float(headers[b"x-compute-ms"]))
                if status == 429:
                    await asyncio.sleep(0.001)
        finally:
            writer.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    result.seconds = min(seconds, max(1e-9, time.perf_counter() - measure_from))
    return result


@_without_gc
async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    warmup: float = 1.0,
    max_connections: int = 1024,
) -> LoadResult:
    """Requests arrive at ``rate`` per second whatever the server does (an overload is offered load,
    not a closed loop that slows down with the server); bounded by rate x (warmup + seconds)."""
    _check_loopback(host)
    result = LoadResult(clients=0, seconds=seconds)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int) -> None:
        nonlocal opened
        sent = time.perf_counter()
        for attempt in range(2):
            reused = bool(idle) and attempt == 0  # a retry takes a new connection: others may be stale too
            if reused:
                reader, writer = idle.pop()
            elif opened < max_connections:
                opened += 1
                reader, writer = await asyncio.open_connection(host, port)
            else:
                result.statuses[0] += 1  # the generator itself ran out of connections: counted, not sent
                return
            try:
                writer.write(requests[index % len(requests)])
                status, _ = await _read_response(reader)
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                opened -= 1
                # The server closes keep-alive connections idle past its timeout: that request never
                # reached it, so it is sent again on a new connection (its latency keeps the first try).
                if reused and attempt == 0:
                    continue
                result.statuses[0] += 1  # a connection error, counted as such
                return
        done = time.perf_counter()
        idle.append((reader, writer))
        if measure_from <= sent <= stop_at:
            result.record(status, (done - sent) * 1000.0)

    total = int(rate * (warmup + seconds))
    for index in range(total):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    result.clients = opened
    for _, writer in idle:
        writer.close()
    return result
