"""Bounded load generators for the overload and soak harnesses (asyncio + httpx, 127.0.0.1 only).

Every loop here ends by a count or a duration: nothing runs unbounded, and every request has a
client-side timeout, so a hung server shows up as a failure, not as a hung test.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

Request = tuple[str, str, Any]  # method, path, JSON body (or None)
_WORDS = (
    "amber basin cedar delta ember fjord granite heron iris juniper kelp lagoon mesa nectar onyx pine "
    "quarry reef sierra tundra umber vale willow xenon yarrow zephyr"
).split()


@dataclass(frozen=True)
class Outcome:
    started: float  # seconds since the load began
    latency: float  # seconds; the timeout for a request that got no answer
    status: int  # HTTP status; 0 = no answer (transport error or client timeout)
    retry_after: str | None


def unique_texts(count: int, rng: random.Random) -> list[str]:
    """Texts that the embedding cache has never seen (so each one costs device time)."""
    return [" ".join(rng.choice(_WORDS) for _ in range(12)) + f" {rng.getrandbits(48):x}" for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def _send(http: httpx.AsyncClient, request: Request, began: float, timeout: float) -> Outcome:
    method, path, body = request
    started = time.monotonic()
    try:
        response = await http.request(method, path, json=body, timeout=timeout)
        status, retry_after = response.status_code, response.headers.get("retry-after")
    except httpx.HTTPError:
        status, retry_after = 0, None
    return Outcome(started - began, time.monotonic() - started, status, retry_after)


async def closed_loop(
    url: str, make: Callable[[], Request], concurrency: int, seconds: float, timeout: float = 30.0
) -> list[Outcome]:
    """``concurrency`` clients, each sending its next request when the last one is answered."""
    outcomes: list[Outcome] = []
    began = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:

        async def client() -> None:
            while time.monotonic() - began < seconds:
                outcomes.append(await _send(http, make(), began, timeout))

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes


async def open_loop(
    url: str,
    make: Callable[[], Request],
    rate: float,
    seconds: float,
    max_in_flight: int = 1000,
    timeout: float = 30.0,
) -> tuple[list[Outcome], int]:
    """Requests at ``rate`` per second whatever the answers (arrivals do not wait for the server),
    for ``seconds``.  Returns the outcomes and how many arrivals were skipped because
    ``max_in_flight`` requests were already waiting (a server that stops answering)."""
    outcomes: list[Outcome] = []
    skipped = 0
    began = time.monotonic()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        tasks: set[asyncio.Task[Outcome]] = set()
        for n in range(int(rate * seconds)):
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= max_in_flight:
                skipped += 1
                continue
            task = asyncio.create_task(_send(http, make(), began, timeout))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), outcomes.append(t.result())))
        if tasks:
            await asyncio.wait(tasks)
    return outcomes, skipped


async def sample_latency(url: str, path: str, interval: float, stop: asyncio.Event) -> list[float]:
    """GET ``path`` every ``interval`` on its own connection until ``stop``; the latencies (a failed
    probe counts as 10 s)."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = (await http.get(path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.monotonic() - started if ok else 10.0)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
    return latencies


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
