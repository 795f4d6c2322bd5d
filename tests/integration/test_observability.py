"""The slow-query log and the opt-in tracemalloc snapshot route, against a real server."""

from __future__ import annotations

import json
import logging
import tracemalloc

import httpx


def slow_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "arrwdb.slow"]


def test_searches_over_the_threshold_are_logged_as_json(start_server, caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.slow")
    server = start_server(slow_query_ms=0.001)  # every search is "slow"
    with server.client() as client:
        client.create_library("s", dimension=4)
        client.add_document("s", {"id": "a", "embedding": [1, 0, 0, 0], "metadata": {"t": "x"}})
        client.search("s", embedding=[1, 0, 0, 0], k=3, filter={"t": "x"})
        client.search_batch("s", [{"embedding": [1, 0, 0, 0], "k": 2}, {"embedding": [0, 1, 0, 0], "k": 7}])
        response = httpx.post(f"{server.url}/v1/libraries/nope/search", json={"embedding": [1, 0, 0, 0]})
        assert response.status_code == 404
    single, batch, failed = slow_lines(caplog)
    assert single["route"] == "search" and single["library"] == "s"
    assert single["k"] == 3 and single["filter"] == '{"t":"x"}' and single["queries"] == 1
    assert single["batch_size"] >= 1
    assert single["total_ms"] >= single["compute_ms"] >= 0 and single["queue_ms"] >= 0
    assert batch["route"] == "search_batch" and batch["queries"] == 2 and batch["k"] == 7
    assert failed["error"] == "not_found" and failed["batch_size"] is None


def test_the_memory_route_exists_only_when_tracemalloc_is_on(server):
    response = httpx.post(f"{server.url}/debug/memory/snapshot")
    assert response.status_code == 404
    assert "/debug/memory/snapshot" not in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_memory_snapshots_report_rss_and_growth(start_server):
    was_tracing = tracemalloc.is_tracing()
    try:
        server = start_server(tracemalloc=1)
        url = f"{server.url}/debug/memory/snapshot"
        first = httpx.post(url, params={"limit": 5}, timeout=60).json()
        assert first["snapshot"] == 0 and first["growth"] is None
        assert first["rss_bytes"] > 0 and first["traced_bytes"] > 0
        assert 0 < len(first["top"]) <= 5
        keep = [bytearray(10_000) for _ in range(100)]  # about 1 MB that the next snapshot must see
        second = httpx.post(url, params={"limit": 5}, timeout=60).json()
        assert second["snapshot"] == 1
        grown = [s for s in second["growth"] if "test_observability.py" in s["where"]]
        assert grown and grown[0]["size_diff"] >= 1_000_000
        del keep
    finally:
        if not was_tracing:
            tracemalloc.stop()  # tracing slows every later test in this process
