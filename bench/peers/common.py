"""What every peer run shares: settings, the HNSW parameters, HTTP load, and peer processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arrwdb.bench.loadgen import closed_loop
from arrwdb.bench.serverproc import process_rss_bytes

# One HNSW configuration for every system (hnswlib in Chroma, FAISS in Milvus Lite and arrwdb), so
# QPS compares the serving stacks at the same graph quality; ef_search is chosen so that all of them
# pass recall@10 0.95 on the peers' data (recall is measured and reported for each system).
HNSW = {"m": 32, "ef_construction": 200, "ef_search": 128}


@dataclass(frozen=True)
class PeerSettings:
    rows: int = 50_000
    queries: int = 1000
    dimension: int = 384
    k: int = 10
    batch: int = 1000  # vectors per insert request / call, the same for every system
    clients: tuple[int, ...] = (1, 64)
    seconds: float = 5.0
    warmup: float = 1.0
    texts: int = 2000
    embed_modes: tuple[tuple[int, int], ...] = ((64, 1), (4, 32))  # (clients, texts per request)
    precision: str = "auto"  # the embedding model's dtype on both systems (embed_peer.precision)
    hnsw: dict[str, int] = field(default_factory=lambda: dict(HNSW))  # {}: each system's own defaults
    ready_timeout_s: float = 600.0
    rounds: int = 2  # interleaved QPS rounds over the HTTP systems (the best kept)


QUICK = PeerSettings(
    rows=3000,
    queries=100,
    seconds=1.0,
    warmup=0.3,
    texts=200,
    clients=(1, 8),
    embed_modes=((8, 1), (2, 8)),
    rounds=1,
)


@dataclass(frozen=True)
class QpsTarget:
    """An HTTP system ready for load: its loopback port and its pre-encoded request pool."""

    port: int
    requests: list[bytes]


def http_point(target: QpsTarget, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Closed-loop QPS at one concurrency, through the same lean client for every HTTP system."""
    result = asyncio.run(closed_loop("127.0.0.1", target.port, target.requests, clients, seconds, warmup))
    summary = result.summary()
    if summary["ok"] < summary["requests"]:
        raise RuntimeError(f"{summary['requests'] - summary['ok']} failed requests: {summary['statuses']}")
    return summary


def interleaved_points(
    targets: dict[str, QpsTarget], clients: tuple[int, ...], seconds: float, warmup: float, rounds: int, progress: Any
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """QPS of every target at every concurrency, in ``rounds`` interleaved rounds; the best round is kept.

    On a machine shared with other work, the load changes minute to minute: measuring one system
    after the other would compare the machine's moods.  Round-robin points a few seconds apart, the
    best of each kept, compare the systems under the same conditions.  Every round is recorded."""
    best: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in targets}
    failed: dict[str, str] = {}
    for round_ in range(rounds):
        for n in clients:
            for label, target in targets.items():
                if label in failed:
                    continue
                progress.set_postfix_str(f"QPS round {round_ + 1}/{rounds}: {label}, {n} clients")
                try:
                    point = http_point(target, n, seconds, warmup)
                except Exception as exc:  # one system failing must not stop the others
                    failed[label] = f"{type(exc).__name__}: {exc}"
                    continue
                point["round"] = round_ + 1
                kept = best[label].get(n)
                if kept is None or point["qps"] > kept["qps"]:
                    point["rounds_qps"] = [*(kept or {}).get("rounds_qps", []), point["qps"]]
                    best[label][n] = point
                else:
                    kept["rounds_qps"].append(point["qps"])
    return {label: [by_clients[n] for n in clients if n in by_clients] for label, by_clients in best.items()}, failed


class PeerProcess:
    """A peer's server on a loopback port: started, polled until ready, stopped (its group only)."""

    def __init__(self, command: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> PeerProcess:
        log = open(self.log_path, "ab")
        # A session of its own, so that stopping it also stops any worker processes it forks.
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"`{' '.join(self.command)}` exited with {self.process.returncode}; see {self.log_path}"
                )
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"`{' '.join(self.command)}` not ready after {timeout:.0f} s; see {self.log_path}")

    def rss_bytes(self) -> int:
        return 0 if self.process is None else process_rss_bytes(self.process.pid)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> PeerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def package_version(python: Path, package: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None if done.returncode == 0 else None
