"""`arrwdb bench batching`: what micro-batching does to throughput and tail latency.

For batching off (ARRWDB_MAX_BATCH_SIZE=1 and ARRWDB_COMMIT_MAX_REQUESTS=1) and on, one server process
each, N closed-loop clients (1, 8, 64, 256 by default) run: (a) vector queries on a 100k x 384
brute-force library, (b) text queries (embed + search; the embedding cache is off so every text costs
a forward pass), (c) concurrent single-document inserts of new texts.  Results: JSON, a PNG, and a
table of ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from arrwdb.bench.datasets import build_vector_store, random_vectors, sentences
from arrwdb.bench.loadgen import LoadResult, closed_loop, encode_post, median_round, open_loop
from arrwdb.bench.machine import machine_info
from arrwdb.bench.plots import throughput_and_p99
from arrwdb.bench.serverproc import ServerProcess

SETTINGS = {"off": 1, "on": 256}
BASELINE = "baseline"  # batching on, served by another checkout's interpreter (``baseline_python``)
LIBRARY = "vectors"


def _vector_requests(count: int, dimension: int) -> list[bytes]:
    queries = random_vectors(count, dimension, seed=99)
    path = f"/v1/libraries/{LIBRARY}/search"
    return [
        encode_post("127.0.0.1", path, orjson.dumps({"embedding": q, "k": 10}, option=orjson.OPT_SERIALIZE_NUMPY))
        for q in queries
    ]


def _text_requests(count: int, seed: int) -> list[bytes]:
    path = f"/v1/libraries/{LIBRARY}/search"
    return [encode_post("127.0.0.1", path, orjson.dumps({"query": t, "k": 10})) for t in sentences(count, seed)]


def _insert_requests(library: str, count: int, seed: int) -> list[bytes]:
    path = f"/v1/libraries/{library}/documents"
    return [encode_post("127.0.0.1", path, orjson.dumps({"text": t})) for t in sentences(count, seed)]


def in_process_rate(vectors: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """The same exact index the server uses, searched in process: the ceiling HTTP is measured against."""
    import torch

    from arrwdb.index.flat import FlatIndex

    index = FlatIndex(vectors.shape[1], "cosine", torch.device("cpu"))
    index.add(np.arange(1, len(vectors) + 1, dtype=np.int64), vectors)
    queries = random_vectors(batch * repeats, vectors.shape[1], seed=5)
    index.search(queries[:batch], 10)  # warm-up
    started = time.perf_counter()
    for i in range(repeats):
        index.search(queries[i * batch : (i + 1) * batch], 10)
    seconds = time.perf_counter() - started
    return {"batch": batch, "qps": batch * repeats / seconds, "ms_per_batch": seconds / repeats * 1000}


def _baseline_store(python: str, cache_dir: Path, rows: int, dimension: int) -> Path:
    """The same library built by the baseline's own code, in a data directory of its own: an earlier
    arrwdb may not open a store that this one wrote (its schema version is older)."""
    tag = hashlib.sha256(str(Path(python).resolve()).encode()).hexdigest()[:10]
    data_dir = cache_dir / f"vectors-{rows}x{dimension}-baseline-{tag}"
    script = (
        "import sys; from pathlib import Path; "
        "from arrwdb.bench.datasets import build_vector_store, random_vectors; "
        f"build_vector_store(Path(sys.argv[1]), {LIBRARY!r}, random_vectors({rows}, {dimension}, seed=1))"
    )
    subprocess.run([python, "-P", "-c", script, str(data_dir.resolve())], check=True)  # -P: its own arrwdb
    return data_dir


def _run(host_port: tuple[str, int], requests: list[bytes], clients: int, seconds: float, warmup: float) -> LoadResult:
    return asyncio.run(closed_loop(host_port[0], host_port[1], requests, clients, seconds, warmup))


def _measure(
    server: ServerProcess,
    scenario: str,
    setting: str,
    clients: int,
    requests: dict[str, list[bytes]],
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """One point: ``clients`` closed-loop clients of ``scenario`` against ``server``.  Inserts go into a
    library of their own, deleted afterwards: the store is the cached one every run starts from, and
    what a run inserted must not be loaded (and counted in the RSS) by the next."""
    target = ("127.0.0.1", server.port)
    if scenario != "insert":
        return _run(target, requests[scenario], clients, seconds, warmup).summary()
    library = f"inserts-{setting}-{clients}-{int(time.time())}"
    _create_library(server.url, library)
    try:
        return _run(target, _insert_requests(library, 20_000, seed=clients), clients, seconds, warmup).summary()
    finally:
        _delete_library(server.url, library)


def run_batching(
    output: Path,
    cache_dir: Path,
    concurrencies: tuple[int, ...] = (1, 8, 64, 256),
    seconds: float = 6.0,
    warmup: float = 1.5,
    rows: int = 100_000,
    scenarios: tuple[str, ...] = ("vector", "text", "insert"),
    progress: bool = True,
    baseline_python: str | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    """``baseline_python``: also measure batching on as the server of that interpreter's arrwdb serves
    it (a checkout of an earlier commit, in its own environment), in the same run, as ``baseline``.
    ``rounds``: each point is measured that many times on every server, the rounds interleaved, and the
    round of median throughput is reported (with every round's throughput in ``rounds_qps``); the
    overload phase runs that many times, reported by its median 429 p99."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    dimension = 384
    output.parent.mkdir(parents=True, exist_ok=True)
    vectors = random_vectors(rows, dimension, seed=1)
    data_dir = cache_dir / f"vectors-{rows}x{dimension}"
    build_vector_store(data_dir, LIBRARY, vectors)
    requests = {
        "vector": _vector_requests(2000, dimension),
        "text": _text_requests(20_000, seed=7),
    }
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in scenarios}
    from tqdm import tqdm

    servers = [(setting, batch_size, None) for setting, batch_size in SETTINGS.items()]
    # A store each: the servers run at once.  Batching on serves the cached store; off, a copy of it.
    served_dirs = {"on": data_dir, "off": cache_dir / f"vectors-{rows}x{dimension}-off"}
    build_vector_store(served_dirs["off"], LIBRARY, vectors)
    if baseline_python is not None:
        servers.append((BASELINE, SETTINGS["on"], baseline_python))
        served_dirs[BASELINE] = _baseline_store(baseline_python, cache_dir, rows, dimension)
    total = len(servers) * len(scenarios) * len(concurrencies) * rounds
    bar = tqdm(total=total, desc="batching", disable=not progress)
    log_path = output.with_suffix(".server.log")
    with contextlib.ExitStack() as stack:
        # Every server is up for the whole run and each point is measured on each in turn, back to
        # back: this VM's speed drifts within minutes, and servers measured one after the other would
        # compare different moments.  The idle ones wait, with no load and no background work.
        running: dict[str, ServerProcess] = {}
        for setting, batch_size, python in servers:
            env = {
                "ARRWDB_MAX_BATCH_SIZE": str(batch_size),
                # Batching off is group commit off too: one write request a transaction.
                "ARRWDB_COMMIT_MAX_REQUESTS": str(batch_size),
                "ARRWDB_EMBED_CACHE_BYTES": "0",
                "ARRWDB_RESULT_CACHE_BYTES": "0",
            }
            server = ServerProcess(served_dirs[setting], env=env, log_path=log_path, python=python)
            running[setting] = stack.enter_context(server)
        for server in running.values():
            server.wait_settled()
        for scenario in scenarios:
            for clients in concurrencies:
                measured: dict[str, list[dict[str, Any]]] = {setting: [] for setting in running}
                for _ in range(rounds):
                    for setting, server in running.items():
                        point = _measure(server, scenario, setting, clients, requests, seconds, warmup)
                        measured[setting].append(point)
                        bar.set_postfix_str(f"{scenario} {setting} c={clients} qps={point['qps']:.0f}")
                        bar.update()
                for setting, points in measured.items():
                    results[scenario].setdefault(setting, []).append(median_round(points, "qps"))
        memory = {setting: server.rss_bytes() for setting, server in running.items()}
    bar.close()
    overload_report = None
    if "vector" in scenarios:
        phases = [overload(data_dir, requests["vector"], seconds, warmup, output) for _ in range(rounds)]
        overload_report = median_round(phases, "rejected_p99_ms")
    report: dict[str, Any] = {
        "benchmark": "batching",
        "machine": machine_info(),
        "settings": {
            "rows": rows,
            "dimension": dimension,
            "concurrencies": list(concurrencies),
            "seconds": seconds,
            "warmup": warmup,
            "batch_size": SETTINGS,
            "baseline_python": baseline_python,
            "rounds": rounds,
        },
        "results": results,
        "server_rss_bytes": memory,
        "overload": overload_report,
        "in_process": [in_process_rate(vectors, batch, repeats) for batch, repeats in ((1, 50), (64, 10), (256, 4))],
    }
    report["ratios"] = ratios(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    throughput_and_p99(results, output.with_suffix(".png"), f"arrwdb batching ({report['machine']['cpu']})")
    return report


def overload(
    data_dir: Path, requests: list[bytes], seconds: float, warmup: float, output: Path, saturating: int = 256
) -> dict[str, Any]:
    """Measure the saturated batched server (``saturating`` closed-loop clients), then offer twice its
    throughput open-loop against an admission queue sized to that load: admitted requests should keep
    their latency, the excess should get 429 at once, and memory should stay flat.  256 clients, not
    64: on 2 cores the server still gains throughput from 64 to 256 clients
    (larger batches), so twice the 64-client rate was mostly served, not an overload."""
    env = {
        "ARRWDB_MAX_BATCH_SIZE": "256",
        "ARRWDB_MAX_QUEUE": str(saturating),
        "ARRWDB_EMBED_CACHE_BYTES": "0",
        "ARRWDB_RESULT_CACHE_BYTES": "0",
    }
    with ServerProcess(data_dir, env=env, log_path=output.with_suffix(".server.log")) as server:
        server.wait_settled()
        saturated = _run(("127.0.0.1", server.port), requests, saturating, seconds, warmup).summary()
        rss_before = server.rss_bytes()
        rate = 2 * float(saturated["qps"])
        doubled = asyncio.run(open_loop("127.0.0.1", server.port, requests, rate, seconds, warmup)).summary()
        rss_during = server.rss_bytes()
        recovered = _run(("127.0.0.1", server.port), requests, saturating, seconds, warmup).summary()
        rss_after = server.rss_bytes()
    return {
        "max_queue": saturating,
        "offered_rate": rate,
        "saturated": saturated,
        "doubled": doubled,
        "recovered": recovered,
        "rss_bytes": {"saturated": rss_before, "doubled": rss_during, "recovered": rss_after},
        "admitted_p99_over_saturated_p99": doubled["p99_ms"] / max(float(saturated["p99_ms"]), 1e-9),
        "rejected_p99_ms": doubled["rejected_p99_ms"],
    }


def _create_library(url: str, name: str) -> None:
    import httpx

    httpx.post(f"{url}/v1/libraries", json={"name": name}, timeout=30).raise_for_status()


def _delete_library(url: str, name: str) -> None:
    import httpx

    httpx.delete(f"{url}/v1/libraries/{name}", timeout=60).raise_for_status()


def _at(points: list[dict[str, Any]], clients: int) -> dict[str, Any] | None:
    return next((p for p in points if p["clients"] == clients), None)


def ratios(report: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    results = report["results"]
    for scenario, settings in results.items():
        for clients in (1, 8, 64, 256):
            on, off = _at(settings.get("on", []), clients), _at(settings.get("off", []), clients)
            if on and off and off["qps"] > 0:
                out[f"{scenario}.qps_on_over_off@{clients}"] = on["qps"] / off["qps"]
                out[f"{scenario}.p99_on_over_off@{clients}"] = on["p99_ms"] / max(off["p99_ms"], 1e-9)
        on1, off1 = _at(settings.get("on", []), 1), _at(settings.get("off", []), 1)
        if on1 and off1:
            out[f"{scenario}.p50_added_ms@1"] = on1["p50_ms"] - off1["p50_ms"]
        for clients in (1, 8, 64, 256):
            on, baseline = _at(settings.get("on", []), clients), _at(settings.get(BASELINE, []), clients)
            if on and baseline and baseline["qps"] > 0:
                out[f"{scenario}.qps_on_over_baseline@{clients}"] = on["qps"] / baseline["qps"]
    on64 = _at(results.get("vector", {}).get("on", []), 64)
    in_process = {p["batch"]: p for p in report.get("in_process", [])}
    if on64 and 64 in in_process:
        out["vector.server_on@64_over_in_process_batch64"] = on64["qps"] / in_process[64]["qps"]
    return out


def format_table(report: dict[str, Any]) -> str:
    lines = ["scenario  setting  clients      qps    p50_ms    p95_ms    p99_ms  batch  statuses"]
    for scenario, settings in report["results"].items():
        for setting, points in settings.items():
            for p in points:
                lines.append(
                    f"{scenario:<9} {setting:<7} {p['clients']:>7} {p['qps']:>8.1f} {p['p50_ms']:>9.2f} "
                    f"{p['p95_ms']:>9.2f} {p['p99_ms']:>9.2f} {p['mean_batch_size']:>6.1f}  {p['statuses']}"
                )
    lines.append("")
    for p in report.get("in_process", []):
        lines.append(
            f"in-process exact search, batch {p['batch']:>3}: {p['qps']:8.1f} qps ({p['ms_per_batch']:.2f} ms/batch)"
        )
    if report.get("overload"):
        o = report["overload"]
        lines.append(
            f"overload (max_queue {o['max_queue']}): saturated {o['saturated']['qps']:.0f} qps p99 "
            f"{o['saturated']['p99_ms']:.0f} ms; doubled: admitted p99 {o['doubled']['p99_ms']:.0f} ms "
            f"({o['admitted_p99_over_saturated_p99']:.2f}x), 429 p99 {o['rejected_p99_ms']:.1f} ms, "
            f"statuses {o['doubled']['statuses']}; recovered {o['recovered']['qps']:.0f} qps; "
            f"RSS MiB {[round(v / 2**20) for v in o['rss_bytes'].values()]}"
        )
    lines.append("")
    for key, value in report["ratios"].items():
        lines.append(f"{key:<48} {value:8.2f}")
    return "\n".join(lines)
