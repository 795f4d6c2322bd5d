"""`arrwdb bench suite` end to end on tiny sizes, against a real test server over HTTP."""

from __future__ import annotations

from pathlib import Path

import orjson

from arrwdb.bench.compare import main as compare_main
from arrwdb.bench.suite import SuiteSettings, format_table, run_suite

TINY = SuiteSettings(
    dimensions=(8,),
    index_types=("brute_force", "hnsw"),
    documents=2100,
    warmup=3,
    queries=20,
    batch=700,
    ann_timeout_s=60,
)


def test_suite_measures_every_index_and_writes_json_and_png(server, tmp_path: Path) -> None:
    output = tmp_path / "suite.json"
    report = run_suite(output, TINY, url=server.url, progress=False)
    assert orjson.loads(output.read_bytes())["benchmark"] == "suite"
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert report["machine"]["versions"]["numpy"]
    runs = report["results"]["8"]
    assert set(runs) == {"brute_force", "hnsw"}
    for run in runs.values():
        search = run["search"]
        assert len(run["latencies_ms"]) == TINY.queries
        assert 0 < search["p50_ms"] <= search["p95_ms"] <= search["p99_ms"] <= search["max_ms"]
        assert run["insert"]["docs_per_s"] > 0
    assert runs["brute_force"]["search"]["recall_at_10"] == 1.0  # exact search agrees with numpy
    assert runs["brute_force"]["ann"] is None
    assert runs["hnsw"]["ann"]["timed_out"] is False
    assert runs["hnsw"]["index"]["state"] == "ann"  # timed on the built graph, not the exact fallback
    # ... and on the graph a library at rest holds: a light import graph was upgraded first
    index = runs["hnsw"]["index"]
    assert index["graph_ef_construction"] == index["ef_construction"] and runs["hnsw"]["ann"]["full_graph_s"]
    assert runs["hnsw"]["search"]["recall_at_10"] > 0.5
    assert "hnsw" in format_table(report)
    # Libraries are removed afterwards: the server is left as found.
    with server.client() as client:
        assert client.list_libraries() == []
    assert compare_main(output, output) == 0
