"""Helpers for tests of ``arrwdb serve`` with HTTP worker processes: a real server started as a
subprocess (parent, engine process, N HTTP workers) on a loopback port, and clients pinned to one
worker each."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.server import KillableServer

ADMIN_KEY = "test-admin-key"


def start_processes(data_dir: Path, workers: int = 2, **env: str) -> KillableServer:
    settings = {"ARRWDB_WORKERS": str(workers), "ARRWDB_ADMIN_KEY": ADMIN_KEY, **env}
    return KillableServer(data_dir, env=settings, log_path=data_dir.parent / f"server-{data_dir.name}.log").start()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False


def worker_pids(url: str, workers: int, headers: dict[str, str] | None = None) -> set[int]:
    """The HTTP workers' pids, as each answers /health on a connection of its own."""
    seen: set[int] = set()
    for _ in range(200):
        with httpx.Client(base_url=url, headers=headers) as client:
            seen.add(client.get("/health").json()["pid"])
        if len(seen) == workers:
            return seen
    raise AssertionError(f"only {len(seen)} of {workers} HTTP workers answered")


def pinned_clients(url: str, count: int, headers: dict[str, str] | None = None) -> list[tuple[int, httpx.Client]]:
    """``count`` keep-alive clients, each on a connection to a different HTTP worker (new connections
    are spread by the kernel: a client is kept when it reached a worker not pinned yet)."""
    pinned: dict[int, httpx.Client] = {}
    for _ in range(200):
        client = httpx.Client(base_url=url, headers=headers, timeout=60.0, limits=httpx.Limits(max_connections=1))
        pid = client.get("/health").json()["pid"]
        if pid in pinned:
            client.close()
        else:
            pinned[pid] = client
        if len(pinned) == count:
            return list(pinned.items())
    raise AssertionError(f"could not reach {count} different HTTP workers")


def engine_pid(server: KillableServer, workers: set[int]) -> int:
    """The engine: the parent's child that is neither an HTTP worker nor multiprocessing's resource
    tracker (which loads no model, so it is the one with the smaller memory)."""
    assert server.pid is not None
    others = [pid for pid in children(server.pid) if pid not in workers]
    rss = {pid: _rss(pid) for pid in others}
    return max(rss, key=lambda pid: rss[pid])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_ready(url: str, timeout: float = 120.0) -> float:
    """Seconds until /ready answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready again")


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def metric_sum(text: str, name: str, **labels: Any) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(part in line for part in wanted):
                total += float(line.rsplit(" ", 1)[1])
    return total
