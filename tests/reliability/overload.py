"""Overload: measure the saturating rate, then offer twice that rate (open loop) and watch the answers.

Requests are /v1/embed calls of 8 texts never seen before (each costs device time; the embedding
cache cannot answer them).  The server must answer the excess with fast 429s carrying Retry-After,
keep serving at its own pace meanwhile, keep /health fast and its memory flat, and serve the very
next request once the load is gone.

    python -m tests.reliability.overload          # starts its own server (ARRWDB_MAX_QUEUE=32)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.load import closed_loop, open_loop, percentile, rss_bytes, sample_latency, unique_texts
from tests.reliability.server import KillableServer

MAX_QUEUE = 32  # texts waiting: four requests of 8 texts fill it


@dataclass
class OverloadReport:
    capacity_rps: float = 0.0  # requests/s served at saturation (closed loop, 4 clients)
    served_p50_s: float = 0.0
    offered_rps: float = 0.0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    skipped_arrivals: int = 0
    goodput_rps: float = 0.0
    rejected_p50_ms: float = 0.0
    rejected_p95_ms: float = 0.0
    rejected_max_ms: float = 0.0
    retry_after_present: bool = False
    health_probes: int = 0
    health_p50_ms: float = 0.0
    health_p95_ms: float = 0.0
    health_max_ms: float = 0.0
    health_over_50ms: int = 0
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    recovery_statuses: list[int] = field(default_factory=list)
    recovery_max_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "statuses": dict(self.statuses)}


def run_overload(url: str, pid: int, seconds: float = 8.0, seed: int = 5) -> OverloadReport:
    rng = random.Random(seed)
    report = OverloadReport(seconds=seconds)

    def embed_request() -> tuple[str, str, Any]:
        return "POST", "/v1/embed", {"texts": unique_texts(8, rng)}

    async def scenario() -> None:
        await closed_loop(url, embed_request, concurrency=4, seconds=2)  # warm
        measured = await closed_loop(url, embed_request, concurrency=4, seconds=6)
        served = [o for o in measured if o.status == 200]
        report.capacity_rps = len(served) / 6
        report.served_p50_s = percentile([o.latency for o in served], 50)
        report.offered_rps = 2 * report.capacity_rps
        report.rss_before_mib = rss_bytes(pid) / 2**20
        stop = asyncio.Event()
        health = asyncio.create_task(sample_latency(url, "/health", 0.05, stop))
        outcomes, report.skipped_arrivals = await open_loop(url, embed_request, report.offered_rps, seconds)
        stop.set()
        probes = await health
        report.rss_after_mib = rss_bytes(pid) / 2**20
        report.statuses = Counter(o.status for o in outcomes)
        report.goodput_rps = report.statuses[200] / seconds
        rejected = [o for o in outcomes if o.status == 429]
        latencies = [o.latency * 1000 for o in rejected]
        report.rejected_p50_ms = percentile(latencies, 50)
        report.rejected_p95_ms = percentile(latencies, 95)
        report.rejected_max_ms = max(latencies, default=0.0)
        report.retry_after_present = bool(rejected) and all(
            o.retry_after is not None and int(o.retry_after) >= 1 for o in rejected
        )
        report.health_probes = len(probes)
        report.health_p50_ms = percentile(probes, 50) * 1000
        report.health_p95_ms = percentile(probes, 95) * 1000
        report.health_max_ms = max(probes, default=0.0) * 1000
        report.health_over_50ms = sum(p > 0.05 for p in probes)

    asyncio.run(scenario())
    # Recovery: the moment the load is gone, requests are served again.
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(3):
            started = time.monotonic()
            response = http.post("/v1/embed", json={"texts": unique_texts(8, rng)})
            report.recovery_statuses.append(response.status_code)
            report.recovery_max_s = max(report.recovery_max_s, time.monotonic() - started)
    return report


def server_env(header_timeout_s: float = 2.0) -> dict[str, str]:
    return {
        "ARRWDB_MAX_QUEUE": str(MAX_QUEUE),
        "ARRWDB_HEADER_TIMEOUT_S": str(header_timeout_s),
        "ARRWDB_KEEP_ALIVE_S": "2",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.overload", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arrwdb-overload-") as scratch:
        server = KillableServer(Path(scratch) / "data", env=server_env()).start()
        try:
            report = run_overload(server.url, server.pid or 0, args.seconds)
        finally:
            server.stop()
    summary = report.as_dict()
    print(json.dumps(summary, indent=2, default=float))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
