"""The search-result cache against a real server: hits are served without the device, and a search
after an acknowledged write never sees a result cached before it (read-your-writes, API.md)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np

from arrwdb.client.client import AsyncClient
from tests.integration.test_batching import block_worker, metric

QUERY = [1.0, 0.5, 0.25, 0.125]


def top_ids(client, library: str, k: int = 1, **query) -> list[str]:
    query.setdefault("embedding", QUERY)
    return [h["document_id"] for h in client.search(library, k=k, **query)]


def test_a_repeated_search_is_a_hit_with_zero_batch_and_compute(server, client):
    client.create_library("c", dimension=4)
    client.add_document("c", {"id": "a", "embedding": [1, 0, 0, 0], "title": "A", "text": "alpha"})
    url = f"{server.url}/v1/libraries/c/search"
    first = httpx.post(url, json={"embedding": QUERY, "k": 1})
    second = httpx.post(url, json={"embedding": QUERY, "k": 1})
    assert first.status_code == second.status_code == 200
    assert first.json()["results"] == second.json()["results"]
    assert int(first.headers["x-batch-size"]) >= 1
    assert second.headers["x-batch-size"] == "0"
    assert float(second.headers["x-compute-ms"]) == 0.0
    metrics = client.metrics()
    assert metric(metrics, "arrwdb_result_cache_hits_total") == 1
    assert metric(metrics, "arrwdb_result_cache_misses_total") == 1
    assert metric(metrics, "arrwdb_result_cache_bytes") > 0


def test_batch_search_mixes_hits_and_misses_in_order(client):
    client.create_library("b", dimension=4)
    client.add_documents("b", [{"id": f"d{i}", "embedding": [1, i, 0, 0]} for i in range(4)])
    queries = [{"embedding": [1, i, 0, 0], "k": 1} for i in range(4)]
    client.search("b", **queries[2])  # one of them is cached
    assert [r[0]["document_id"] for r in client.search_batch("b", queries)] == ["d0", "d1", "d2", "d3"]


def test_every_kind_of_write_is_seen_by_the_next_search(client):
    client.create_library("w", dimension=4, metric="ip")
    client.add_document("w", {"id": "base", "embedding": [1, 0, 0, 0], "title": "old"})
    assert top_ids(client, "w") == ["base"]
    assert top_ids(client, "w") == ["base"]  # now cached
    client.add_document("w", {"id": "better", "embedding": [2, 1, 0, 0]})
    assert top_ids(client, "w") == ["better"]  # an insert
    client.add_document("w", {"id": "better", "embedding": [0, 0, 0, 1]})
    assert top_ids(client, "w") == ["base"]  # an upsert that moves the document away
    client.add_document("w", {"id": "base", "embedding": [1, 0, 0, 0], "title": "new"})
    assert client.search("w", embedding=QUERY, k=1)[0]["title"] == "new"  # fields of an upsert
    client.add_documents("w", [{"id": "top", "embedding": [3, 3, 3, 3]}])
    assert top_ids(client, "w") == ["top"]  # a batch insert
    client.delete_document("w", "top")
    assert top_ids(client, "w") == ["base"]  # a delete
    assert top_ids(client, "w", filter={"x": 1}) == []
    client.add_document("w", {"id": "tagged", "embedding": [0, 1, 0, 0], "metadata": {"x": 1}})
    assert top_ids(client, "w", filter={"x": 1}) == ["tagged"]  # a filtered search sees new metadata


def test_a_search_in_flight_across_a_write_is_not_served_after_it(server, client):
    """A search admitted before a write but finished after it must not become the answer to the
    searches that follow the write's acknowledgement (the worker is held so both queue up)."""
    client.create_library("flight", dimension=4, metric="ip")
    client.add_document("flight", {"id": "old", "embedding": [1, 0, 0, 0]})

    async def scenario() -> tuple[list[str], list[str]]:
        async with AsyncClient(server.url) as c:
            job = block_worker(server)
            try:
                during = asyncio.create_task(c.search("flight", embedding=QUERY, k=1))
                await asyncio.sleep(0.2)  # admitted: it waits for the held worker
                write = asyncio.create_task(c.add_document("flight", {"id": "new", "embedding": [2, 2, 2, 2]}))
                await asyncio.sleep(0.2)  # committed: its index update waits for the worker too
            finally:
                job.release.set()
            first = await during
            await write  # acknowledged
            after = await c.search("flight", embedding=QUERY, k=1)
        return [h["document_id"] for h in first], [h["document_id"] for h in after]

    first, after = asyncio.run(scenario())
    assert first in (["old"], ["new"])  # concurrent with the write: either state is a valid answer
    assert after == ["new"]
    assert top_ids(client, "flight") == ["new"]


def test_a_recreated_library_never_sees_the_old_ones_results(client):
    client.create_library("again", dimension=4)
    client.add_document("again", {"id": "old", "embedding": [1, 0, 0, 0]})
    assert top_ids(client, "again") == ["old"]
    client.delete_library("again")
    client.create_library("again", dimension=4)
    assert top_ids(client, "again") == []


def test_read_your_writes_while_other_clients_keep_refilling_the_cache(server, client):
    """Writers and searchers of the same query race: every search issued after a write's
    acknowledgement must see that write, although other clients keep caching the same query."""
    client.create_library("race", dimension=4, metric="ip")
    query = np.asarray(QUERY)
    stop = threading.Event()
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not stop.is_set():
                    c.post("/v1/libraries/race/search", json={"embedding": QUERY, "k": 1}).raise_for_status()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 41):
            # Each new document scores higher on the query than every earlier one (inner product).
            client.add_document("race", {"id": f"v{i}", "embedding": (query * i).tolist()})
            assert top_ids(client, "race") == [f"v{i}"]
            if i % 4 == 0:
                client.delete_document("race", f"v{i}")
                assert top_ids(client, "race") == [f"v{i - 1}"]
                client.add_document("race", {"id": f"v{i}", "embedding": (query * i).tolist()})
                assert top_ids(client, "race") == [f"v{i}"]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert metric(client.metrics(), "arrwdb_result_cache_hits_total") > 0  # the cache was really in play


def test_zero_bytes_turns_the_cache_off(start_server):
    server = start_server(result_cache_bytes=0)
    with server.client() as client:
        client.create_library("off", dimension=4)
        client.add_document("off", {"id": "a", "embedding": [1, 0, 0, 0]})
        for _ in range(3):
            response = httpx.post(f"{server.url}/v1/libraries/off/search", json={"embedding": QUERY})
            assert int(response.headers["x-batch-size"]) >= 1
        assert metric(client.metrics(), "arrwdb_result_cache_hits_total") == 0
