"""Soak: a bounded mixed workload against a real ``arrwdb serve``; memory must level off, and no
request may fail.

Clients (a closed loop) search by text and by vector with filters, upsert and delete documents,
write batches, read documents and statistics, and embed, over bounded pools of ids and texts, so
that the data and every cache reach a steady size during the warm-up.  The server's RSS is sampled
every second; the growth from the end of the warm-up to the end of the run must stay under 10 %.

    python -m tests.reliability.soak --minutes 10     # the long run (docs/RELIABILITY.md)
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.load import percentile, rss_bytes, unique_texts
from tests.reliability.server import KillableServer

MAX_GROWTH = 0.10
VECTOR_DIM = 64


@dataclass(frozen=True)
class Pools:
    texts: int = 120  # distinct texts (documents and queries): the embedding cache fills during warm-up
    text_docs: int = 120
    vectors: int = 1500  # below 2048: the hnsw library stays exact (a build mid-run would grow memory)

    @staticmethod
    def long() -> Pools:
        return Pools(texts=400, text_docs=400, vectors=6000)


@dataclass
class SoakReport:
    seconds: float = 0.0
    warmup_seconds: float = 0.0
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    keepalive_retries: int = 0
    rss_after_warmup_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_peak_mib: float = 0.0
    growth: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Workload:
    def __init__(self, pools: Pools, seed: int) -> None:
        self.pools = pools
        self.rng = random.Random(seed)
        self.texts = unique_texts(pools.texts, random.Random(seed + 1))

    def vector(self) -> list[float]:
        return [self.rng.gauss(0, 1) for _ in range(VECTOR_DIM)]

    def text_doc(self) -> dict[str, Any]:
        n = self.rng.randrange(self.pools.text_docs)
        return {"id": f"d{n}", "text": self.rng.choice(self.texts), "metadata": {"n": n, "g": n % 7}}

    def vector_doc(self) -> dict[str, Any]:
        n = self.rng.randrange(self.pools.vectors)
        return {"id": f"v{n}", "embedding": self.vector(), "metadata": {"g": n % 5, "tag": f"t{n % 3}"}}

    def next(self) -> tuple[str, str, Any, set[int]]:
        """One request: method, path, body, and the statuses that count as success."""
        pick = self.rng.random()
        ok = {200, 201, 204}
        if pick < 0.30:
            query = {"query": self.rng.choice(self.texts), "k": 5}
            return "POST", "/v1/libraries/docs/search", query, ok
        if pick < 0.55:
            query = {"embedding": self.vector(), "k": 10, "filter": {"g": {"$ne": self.rng.randrange(5)}}}
            return "POST", "/v1/libraries/vecs/search", query, ok
        if pick < 0.67:
            return "POST", "/v1/libraries/docs/documents", self.text_doc(), ok
        if pick < 0.77:
            docs = [self.vector_doc() for _ in range(20)]
            return "POST", "/v1/libraries/vecs/documents/batch", {"documents": docs}, ok
        if pick < 0.82:
            library, doc = self.rng.choice(
                (
                    ("docs", f"d{self.rng.randrange(self.pools.text_docs)}"),
                    ("vecs", f"v{self.rng.randrange(self.pools.vectors)}"),
                )
            )
            return "DELETE", f"/v1/libraries/{library}/documents/{doc}", None, ok | {404}
        if pick < 0.88:
            doc = f"v{self.rng.randrange(self.pools.vectors)}"
            return "GET", f"/v1/libraries/vecs/documents/{doc}", None, ok | {404}
        if pick < 0.91:
            return "GET", "/v1/libraries/docs/documents?limit=50", None, ok
        if pick < 0.96:
            texts = self.rng.sample(self.texts, self.rng.randint(1, 4))
            return "POST", "/v1/embed", {"texts": texts}, ok
        return "GET", self.rng.choice(("/v1/libraries", "/v1/libraries/vecs/statistics", "/metrics")), None, ok


async def prefill(url: str, work: Workload) -> None:
    """Every pool id written once and every text embedded once: the steady state starts here."""
    async with httpx.AsyncClient(base_url=url, timeout=300.0) as http:
        for body in ({"name": "docs"}, {"name": "vecs", "dimension": VECTOR_DIM, "index_type": "hnsw"}):
            (await http.post("/v1/libraries", json=body)).raise_for_status()
        docs = [
            {"id": f"d{n}", "text": work.texts[n % len(work.texts)], "metadata": {"n": n, "g": n % 7}}
            for n in range(work.pools.text_docs)
        ]
        # Small batches: a request's texts are admitted one by one, and the test server's queue is short.
        for start in range(0, len(docs), 25):
            batch = {"documents": docs[start : start + 25]}
            (await http.post("/v1/libraries/docs/documents/batch", json=batch)).raise_for_status()
        for start in range(0, work.pools.vectors, 500):
            vectors = [
                {"id": f"v{n}", "embedding": work.vector(), "metadata": {"g": n % 5, "tag": f"t{n % 3}"}}
                for n in range(start, min(start + 500, work.pools.vectors))
            ]
            (await http.post("/v1/libraries/vecs/documents/batch", json={"documents": vectors})).raise_for_status()
        for start in range(0, len(work.texts), 25):
            (await http.post("/v1/embed", json={"texts": work.texts[start : start + 25]})).raise_for_status()
        # A library past the build threshold builds its index now, not in the middle of the measurement.
        for _ in range(600):
            stats = (await http.get("/v1/libraries/vecs/statistics")).json()
            if stats["index"].get("state") != "building" and stats["index"].get("fresh_rows", 0) < 2048:
                break
            await asyncio.sleep(0.5)


async def drive(url: str, pid: int, work: Workload, seconds: float, warmup: float, clients: int) -> SoakReport:
    report = SoakReport(seconds=seconds, warmup_seconds=warmup)
    latencies: list[float] = []
    samples: list[tuple[float, int]] = []
    began = time.monotonic()

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() - began < seconds:
            method, path, body, ok = work.next()
            started = time.monotonic()
            try:
                response = await _request(http, method, path, body, report)
                status = response.status_code
            except httpx.HTTPError as exc:
                status, response = 0, None
                report.errors.append(f"{method} {path}: {exc!r}"[:300])
            latencies.append(time.monotonic() - started)
            report.requests += 1
            report.statuses[str(status)] += 1
            if status and status not in ok and len(report.errors) < 50:
                report.errors.append(f"{method} {path} -> {status}: {response.text[:200] if response else ''}")

    async def sampler() -> None:
        while time.monotonic() - began < seconds:
            samples.append((time.monotonic() - began, rss_bytes(pid)))
            await asyncio.sleep(1.0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as http:
        await asyncio.gather(sampler(), *(client(http) for _ in range(clients)))
    settled = [rss for at, rss in samples if at >= warmup]
    if len(settled) >= 4:
        start, end = _median(settled[:3]), _median(settled[-3:])
        report.rss_after_warmup_mib = round(start / 2**20, 1)
        report.rss_end_mib = round(end / 2**20, 1)
        report.rss_peak_mib = round(max(settled) / 2**20, 1)
        report.growth = round((end - start) / start, 4)
    report.p50_ms = round(percentile(latencies, 50) * 1000, 1)
    report.p99_ms = round(percentile(latencies, 99) * 1000, 1)
    return report


async def _request(http: httpx.AsyncClient, method: str, path: str, body: Any, report: SoakReport) -> httpx.Response:
    """One request, sent again once if the server closed the pooled connection just as it was reused
    (the keep-alive race every HTTP/1.1 client meets: the server's idle timeout fired as the request
    left).  Counted apart; a second failure is an error."""
    try:
        return await http.request(method, path, json=body)
    except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError):
        report.keepalive_retries += 1
        return await http.request(method, path, json=body)


def _median(values: list[int]) -> float:
    return float(sorted(values)[len(values) // 2])


def soak(
    url: str, pid: int, seconds: float, warmup: float, pools: Pools, clients: int = 6, seed: int = 0
) -> SoakReport:
    """Prefill, then drive the mixed workload for ``seconds`` (the first ``warmup`` not measured)."""
    work = Workload(pools, seed)
    asyncio.run(prefill(url, work))
    return asyncio.run(drive(url, pid, work, seconds, warmup, clients))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-minutes", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--vectors", type=int, default=Pools.long().vectors, help="ids in the hnsw library's pool")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arrwdb-soak-") as scratch:
        server = KillableServer(Path(scratch) / "data", log_path=Path(scratch) / "server.log").start()
        try:
            pools = replace(Pools.long(), vectors=args.vectors)
            report = soak(server.url, server.pid or 0, args.minutes * 60, args.warmup_minutes * 60, pools, args.clients)
        finally:
            server.stop()
    summary = report.as_dict()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if not report.errors and report.growth < MAX_GROWTH else 1


if __name__ == "__main__":
    sys.exit(main())
