"""The scheduler end to end: group commit, read-your-writes, batch invariance, admission, deadlines,
disconnects and a dead worker, against a real server."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from arrwdb.client.client import ApiError, AsyncClient


class BlockJob:
    """Occupies the device worker until released: makes 'the worker is busy' deterministic."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self) -> None:
        self.started.set()
        self.release.wait(30)

    def fail(self, exc: BaseException) -> None:
        self.release.set()


class DieJob:
    def run(self) -> None:
        raise SystemExit("simulated fatal device error")

    def fail(self, exc: BaseException) -> None:
        pass


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(\{[^}]*\})?") + r" ([0-9.e+-]+)"
    return sum(float(m.group(m.lastindex)) for m in re.finditer(pattern, text))


def block_worker(server) -> BlockJob:
    job = BlockJob()
    server.engine.worker.submit(job)
    assert job.started.wait(10)
    return job


def test_concurrent_inserts_share_commits_and_embed_batches(server, client):
    client.create_library("g")
    before = client.metrics()

    async def insert_all() -> list[str]:
        async with AsyncClient(server.url) as c:
            return await asyncio.gather(
                *(c.add_document("g", {"id": f"d{i}", "text": f"note number {i} about gardens"}) for i in range(64))
            )

    ids = asyncio.run(insert_all())
    assert sorted(ids) == sorted(f"d{i}" for i in range(64))
    after = client.metrics()
    commits = metric(after, "arrwdb_group_commit_requests_count") - metric(before, "arrwdb_group_commit_requests_count")
    requests = metric(after, "arrwdb_group_commit_requests_sum") - metric(before, "arrwdb_group_commit_requests_sum")
    assert requests == 64
    assert commits < 64  # several writers shared an fsync
    embed_batches = metric(after, "arrwdb_batch_size_count", 'queue="embed"')
    assert 0 < embed_batches < 64  # several texts shared a forward pass
    assert client.statistics("g")["document_count"] == 64


def test_read_your_writes(client):
    client.create_library("ryw", dimension=8, metric="l2")
    rng = np.random.default_rng(0)
    for i in range(30):
        vector = rng.normal(size=8).tolist()
        client.add_document("ryw", {"id": f"v{i}", "embedding": vector})
        assert client.search("ryw", embedding=vector, k=1)[0]["document_id"] == f"v{i}"
        if i % 3 == 0:
            client.delete_document("ryw", f"v{i}")
            hits = client.search("ryw", embedding=vector, k=30)
            assert f"v{i}" not in [h["document_id"] for h in hits]


@pytest.mark.parametrize("index_type", ["brute_force", "ivf", "hnsw"])
def test_results_do_not_depend_on_batch_composition(start_server, index_type):
    # The result cache would answer the repeated queries without batching them: this test is about batches.
    server = start_server(result_cache_bytes=0)
    with server.client() as client:
        _check_batch_invariance(server, client, index_type)


def _check_batch_invariance(server, client, index_type):
    rng = np.random.default_rng(11)
    data = rng.normal(size=(2000, 384)).astype(np.float32)
    client.create_library("inv", index_type=index_type)
    for start in range(0, len(data), 500):
        docs = [
            {"id": f"d{i}", "embedding": data[i].tolist(), "metadata": {"group": i % 5, "even": i % 2 == 0}}
            for i in range(start, start + 500)
        ]
        client.add_documents("inv", docs)
    queries: list[dict] = []
    for i in range(256):
        query: dict = {"k": int(rng.integers(1, 40))}
        if i % 7 == 0:
            query["query"] = f"a text query number {i}"
        else:
            query["embedding"] = rng.normal(size=384).astype(np.float32).tolist()
        if i % 3 == 0:
            query["filter"] = {"group": int(i % 5)}
        elif i % 5 == 0:
            query["filter"] = {"even": True}
        queries.append(query)
    alone = [client.search("inv", **q) for q in queries]

    async def concurrently() -> list[list[dict]]:
        async with AsyncClient(server.url) as c:
            responses = await asyncio.gather(*(c.search("inv", **q) for q in queries))
        return responses

    batched = client.search_batch("inv", queries)
    concurrent = asyncio.run(concurrently())
    for single, in_batch, in_concurrent in zip(alone, batched, concurrent, strict=True):
        for other in (in_batch, in_concurrent):
            assert [h["document_id"] for h in other] == [h["document_id"] for h in single]
            assert np.allclose([h["score"] for h in other], [h["score"] for h in single], atol=1e-5)
    sizes = metric(client.metrics(), "arrwdb_batch_size_sum", 'queue="search"')
    count = metric(client.metrics(), "arrwdb_batch_size_count", 'queue="search"')
    assert sizes / count > 1  # the concurrent and batch requests really were batched


def test_overload_answers_429_at_once_and_recovers(start_server):
    server = start_server(max_queue=4)
    with server.client() as client:
        client.create_library("o", dimension=4)
        client.add_document("o", {"id": "a", "embedding": [1, 2, 3, 4]})
        job = block_worker(server)

        async def flood() -> list[tuple[int, float, str | None]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:

                async def one() -> tuple[int, float, str | None]:
                    started = time.perf_counter()
                    r = await c.post("/v1/libraries/o/search", json={"embedding": [1, 2, 3, 4], "k": 1})
                    if r.status_code == 429:  # the API's error body, whichever layer refused it
                        assert r.json()["error"]["type"] == "overloaded"
                    return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

                tasks = [asyncio.create_task(one()) for _ in range(12)]
                await asyncio.sleep(0.5)
                job.release.set()
                return await asyncio.gather(*tasks)

        outcomes = asyncio.run(flood())
        rejected = [o for o in outcomes if o[0] == 429]
        served = [o for o in outcomes if o[0] == 200]
        # 4 may wait in the queue; the batch dispatched at once and the batch staged behind it hold a
        # variable number (whatever had arrived when each was formed): the rest must be refused.
        assert len(rejected) >= 2
        assert len(served) + len(rejected) == 12
        assert all(o[2] is not None and int(o[2]) >= 1 for o in rejected)
        assert all(o[1] < 0.5 for o in rejected)  # refused at once, not after the worker freed
        assert client.search("o", embedding=[1, 2, 3, 4], k=1)[0]["document_id"] == "a"
        # Every 429 above is counted (how many there were varies with the batches formed meanwhile).
        assert metric(client.metrics(), "arrwdb_requests_dropped_total", 'reason="rejected_queue_full"') == len(
            rejected
        )
        # ...and labelled with their route in the HTTP metrics, as the answers of the route itself are.
        assert metric(
            client.metrics(),
            "arrwdb_http_requests_total",
            'method="POST",route="/v1/libraries/{library}/search",status="429"',
        ) == len(rejected)


def test_deadline_passes_with_504_and_costs_no_compute(server, client):
    client.create_library("d", dimension=4)
    client.add_document("d", {"id": "a", "embedding": [1, 0, 0, 0]})
    job = block_worker(server)
    try:
        response = httpx.post(
            f"{server.url}/v1/libraries/d/search",
            json={"embedding": [1, 0, 0, 0]},
            headers={"X-Request-Timeout-Ms": "200"},
            timeout=10,
        )
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "deadline_exceeded"
    finally:
        job.release.set()
    text = client.search("d", embedding=[1, 0, 0, 0], k=1)
    assert text[0]["document_id"] == "a"
    metrics = client.metrics()
    assert metric(metrics, "arrwdb_requests_dropped_total", 'reason="deadline"') >= 1


def test_disconnected_client_is_dropped_before_compute(server, client):
    client.create_library("c", dimension=4)
    client.add_document("c", {"id": "a", "embedding": [1, 0, 0, 0]})
    searches_before = metric(client.metrics(), "arrwdb_batch_size_sum", 'queue="search"')
    job = block_worker(server)
    try:
        body = b'{"embedding": [1, 0, 0, 0]}'
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(
                b"POST /v1/libraries/c/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.3)  # queued behind the blocked worker
        time.sleep(0.3)  # closed: the server notices the disconnect
    finally:
        job.release.set()
    time.sleep(0.2)
    metrics = client.metrics()
    assert metric(metrics, "arrwdb_requests_dropped_total", 'reason="disconnected"') == 1
    assert metric(metrics, "arrwdb_batch_size_sum", 'queue="search"') == searches_before  # never computed


def test_dead_worker_flips_ready_and_fails_requests(server, client):
    client.create_library("w", dimension=4)
    assert client.ready()["status"] == "ready"
    server.engine.worker.submit(DieJob())
    deadline = time.monotonic() + 10
    while server.engine.worker.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    response = httpx.get(f"{server.url}/ready")
    assert response.status_code == 503
    with pytest.raises(ApiError) as err:
        client.search("w", embedding=[1, 0, 0, 0])
    assert err.value.status == 503
    assert client.health()["status"] == "ok"  # liveness is not readiness
