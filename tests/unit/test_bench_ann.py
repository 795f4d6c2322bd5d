"""`arrwdb bench ann`'s summary: both server legs in the table, the target ratio of each, and the load
generator counting queries (not requests) for batch requests."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from arrwdb.bench import ann
from arrwdb.bench.ann_report import format_report, server_targets, summary_table
from arrwdb.bench.loadgen import LoadResult, closed_loop, encode_post


def _report() -> dict[str, Any]:
    def point(ef: int, qps: float, recall: float, **extra: Any) -> dict[str, Any]:
        return {"ef_search": ef, "qps": qps, "recall": recall, **extra}

    curves = {
        "faiss": [point(64, 10_000.0, 0.93, batch=64), point(128, 6_000.0, 0.97, batch=64)],
        "faiss_b1": [point(64, 3_000.0, 0.93, batch=1), point(128, 2_000.0, 0.97, batch=1)],
        "arrwdb": [point(64, 9_000.0, 0.93, batch=64), point(128, 5_500.0, 0.97, batch=64)],
        "server": [point(64, 1_500.0, 0.93, clients=64), point(128, 1_200.0, 0.97, clients=64)],
        "server_batch": [
            point(64, 5_000.0, 0.93, clients=64, request_batch=64, requests_per_s=78.1),
            point(128, 3_600.0, 0.97, clients=64, request_batch=64, requests_per_s=56.3),
        ],
    }
    report: dict[str, Any] = {
        "settings": {"clients": 64, "batch": 64, "request_batch": 64},
        "datasets": {"glove-400k-50d": {"curves": {"hnsw": curves}}},
    }
    report["table"] = summary_table(report)
    report["targets"] = server_targets(report)
    return report


def test_summary_table_has_both_server_legs() -> None:
    row = next(r for r in _report()["table"] if r["recall"] == 0.95)
    assert row["server"] == 1_200.0 and row["server_batch"] == 3_600.0 and row["faiss"] == 6_000.0


def test_target_ratio_for_each_server_leg() -> None:
    targets = _report()["targets"]
    assert set(targets) == {"server", "server_batch"}
    single, batch = targets["server"], targets["server_batch"]
    assert single["ef_search"] == batch["ef_search"] == 128  # the smallest ef_search at recall >= 0.95
    assert single["ratio"] == 0.2 and not single["met"] and single["request_batch"] == 1
    assert batch["ratio"] == 0.6 and batch["met"] and batch["request_batch"] == 64 and batch["faiss_batch"] == 64


def test_format_report_labels_both_legs() -> None:
    text = format_report(_report())
    assert "server(64c x1)" in text and "server(64c x64)" in text
    assert "target (server: 64 clients, 1 query per /search request)" in text
    assert "target (server_batch: 64 clients, 64 queries per /search/batch request)" in text
    assert "= 0.20 (MISSED" in text and "= 0.60 (met" in text


def test_format_report_without_the_batch_leg() -> None:
    report = _report()
    for row in report["table"]:
        del row["server_batch"]
    report["targets"].pop("server_batch")
    text = format_report(report)
    assert "x64" not in text and "server(64c x1)" in text


def test_batch_bodies_each_carry_request_batch_queries() -> None:
    queries = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    bodies = ann._batch_bodies(queries, {"ef_search": 32}, 4)
    assert len(bodies) == 3  # 10 queries in requests of 4: the last one wraps around
    for body in bodies:
        head, _, payload = body.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /v1/libraries/ann/search/batch HTTP/1.1")
        sent = orjson.loads(payload)["queries"]
        assert len(sent) == 4 and all(q["params"] == {"ef_search": 32} and q["k"] == 10 for q in sent)
    last = orjson.loads(bodies[2].partition(b"\r\n\r\n")[2])["queries"]
    sent_vectors = [np.frombuffer(base64.b64decode(q["embedding_base64"]), dtype="<f4") for q in last]
    assert [v[0] for v in sent_vectors] == [24.0, 27.0, 0.0, 3.0]
    assert all(v.tolist() == queries[int(v[0]) // 3].tolist() for v in sent_vectors)


def test_load_result_counts_items_of_successful_requests() -> None:
    result = LoadResult(clients=1, seconds=2.0)
    result.record(200, 1.0, items=64)
    result.record(200, 1.0, items=64)
    result.record(429, 1.0, items=64)
    summary = result.summary()
    assert summary["qps"] == 1.0 and summary["items"] == 128 and summary["items_per_s"] == 64.0


async def _answering_server(on_request: Callable[[], None] = lambda: None) -> asyncio.Server:
    """A loopback HTTP/1.1 server that answers every request ``{}`` (calling ``on_request`` first)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                on_request()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def test_closed_loop_counts_queries_per_request() -> None:
    async def run() -> LoadResult:
        server = await _answering_server()
        port = server.sockets[0].getsockname()[1]
        requests = [encode_post("127.0.0.1", "/x", b"{}")] * 2
        async with server:
            return await closed_loop("127.0.0.1", port, requests, 2, 0.3, warmup=0.05, items=[5, 5])

    summary = asyncio.run(run()).summary()
    assert summary["ok"] > 0
    assert summary["items"] == 5 * summary["ok"]
    assert abs(summary["items_per_s"] - 5 * summary["qps"]) < 1e-6


def test_the_load_generator_runs_without_the_cyclic_gc_and_restores_it() -> None:
    import gc

    from arrwdb.bench.loadgen import quiet_gc

    assert gc.isenabled()
    with quiet_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with quiet_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


def test_a_closed_loop_runs_with_the_gc_off_and_its_clock_starts_after_the_collection() -> None:
    import gc

    seen: list[bool] = []

    async def run() -> LoadResult:
        server = await _answering_server(lambda: seen.append(gc.isenabled()))
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await closed_loop("127.0.0.1", port, [encode_post("127.0.0.1", "/x", b"{}")], 1, 0.2, warmup=0.0)

    garbage = [[i] for i in range(300_000)]  # a heap worth collecting: not counted in the run's window
    summary = asyncio.run(run()).summary()
    del garbage
    assert summary["ok"] > 0 and seen and not any(seen)
    assert gc.isenabled()
