"""`arrwdb bench compare`: flattening any result file, direction of each figure, the exit code."""

from __future__ import annotations

from pathlib import Path

import orjson

from arrwdb.bench.compare import compare, context_warnings, direction, flatten, main

SUITE = {
    "benchmark": "suite",
    "machine": {"cpu": "x", "cores": 2, "date": "2026-01-01"},
    "settings": {"documents": 10},
    "results": {
        "384": {
            "hnsw": {
                "insert": {"docs_per_s": 1000.0, "seconds": 10.0, "batch": 1000},
                "search": {"p99_ms": 2.0, "mean_ms": 1.0, "recall_at_10": 0.99},
                "latencies_ms": [1.0, 2.0],
            }
        }
    },
}
BATCHING = {
    "benchmark": "batching",
    "results": {"vector": {"on": [{"clients": 64, "qps": 900.0, "p99_ms": 80.0, "statuses": {"200": 5}}]}},
    "server_rss_bytes": {"on": 1000},
    "ratios": {"vector.qps_on_over_off@64": 5.0, "vector.p99_on_over_off@64": 0.5, "vector.p50_added_ms@1": 0.1},
}


def test_flatten_keys_points_and_drops_samples_and_context() -> None:
    flat = flatten(BATCHING)
    assert flat["results.vector.on[clients=64].qps"] == 900.0
    assert "results.vector.on[clients=64].statuses.200" in flat
    suite = flatten(SUITE)
    assert not any("latencies_ms" in key or key.startswith(("machine", "settings")) for key in suite)


def test_direction_follows_the_name() -> None:
    assert direction("results.384.hnsw.search.p99_ms") == -1
    assert direction("results.384.hnsw.insert.docs_per_s") == 1
    assert direction("results.384.hnsw.search.recall_at_10") == 1
    assert direction("results.384.hnsw.ann.ready_s") == -1
    assert direction("ratios.vector.qps_on_over_off@64") == 1
    assert direction("ratios.vector.p99_on_over_off@64") == -1
    assert direction("server_rss_bytes.on") == -1  # a generic last name takes its parent's meaning
    assert direction("results.vector.on[clients=64].statuses.200") == 0
    assert direction("results.vector.on[clients=64].mean_batch_size") == 0
    assert direction("results.384.hnsw.insert.batch") == 0


def test_regressions_are_direction_aware() -> None:
    worse = orjson.loads(orjson.dumps(SUITE))
    search = worse["results"]["384"]["hnsw"]["search"]
    search["p99_ms"] = 2.5  # +25% latency: worse
    search["mean_ms"] = 0.5  # -50% latency: better
    worse["results"]["384"]["hnsw"]["insert"]["docs_per_s"] = 950.0  # -5%: noise
    verdicts = {row.figure: row.verdict(0.1) for row in compare(SUITE, worse)}
    assert verdicts["results.384.hnsw.search.p99_ms"] == "REGRESSION"
    assert verdicts["results.384.hnsw.search.mean_ms"] == "better"
    assert verdicts["results.384.hnsw.insert.docs_per_s"] == "~"
    assert verdicts["results.384.hnsw.insert.batch"] == ""


def _write(path: Path, report: dict) -> Path:
    path.write_bytes(orjson.dumps(report))
    return path


def test_exit_codes(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a.json", BATCHING)
    slower = orjson.loads(orjson.dumps(BATCHING))
    slower["results"]["vector"]["on"][0]["qps"] = 450.0
    b = _write(tmp_path / "b.json", slower)
    assert main(a, a) == 0
    assert main(a, b, noise=0.1) == 1
    assert main(a, b, noise=0.1, warn_only=True) == 0
    assert main(a, b, noise=0.6) == 0  # a 50% drop inside a 60% band
    out = capsys.readouterr().out
    assert "results.vector.on[clients=64].qps" in out and "REGRESSION" in out
    assert main(a, _write(tmp_path / "s.json", SUITE)) == 2  # different benchmarks: nothing to compare


def test_runs_on_cpus_of_one_name_but_other_features_are_flagged() -> None:
    """Two VMs both named "AMD EPYC" differ in family and in bf16 hardware, which sets the model's dtype."""
    zen4 = {"machine": {"cpu": "AMD EPYC", "cpu_family": "25", "cpu_flags": ["avx512f", "avx512_bf16"], "cores": 2}}
    older = {"machine": {"cpu": "AMD EPYC", "cpu_family": "23", "cpu_flags": ["avx2"], "cores": 2}}
    warnings = context_warnings(zen4, older)
    assert any(w.startswith("machine.cpu_family differs") for w in warnings)
    assert any(w.startswith("machine.cpu_flags differs") for w in warnings)
    assert context_warnings(zen4, zen4) == []
