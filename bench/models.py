"""`arrwdb bench models`: the OpenAI-compatible embeddings call, two models on one device, reranking.

One ``arrwdb serve`` (its default processes) with a second embedding model (ARRWDB_MODELS) and a
cross-encoder (ARRWDB_RERANK_MODEL), both built with seeded random weights in the cache folder:
MiniLM-L6-sized (384 wide, 6 layers, 12 heads) like ms-marco-MiniLM-L-6-v2 for the reranker, and a
smaller 256-wide, 4-layer encoder as the second model.  Embedding and result caches are off, so every
text reaches the device.

1. /v1/embed against /v1/embeddings (float and base64), one text a request, 64 closed-loop clients;
   and the answer sizes of both encodings (one text, 64 texts).
2. Text searches on a library of each model, 64 clients on one model alone, then 32 on each at once:
   each model's throughput beside the other over its throughput alone, against the share of the
   device it got (the two shares add up to the device).
3. Reranking: pairs/s of the cross-encoder in process at 1 and 64 pairs a batch; and one client's
   search latency without and with ``rerank: {candidates: 50}``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from arrwdb.bench.datasets import sentences
from arrwdb.bench.loadgen import closed_loop, encode_post
from arrwdb.bench.machine import machine_info
from arrwdb.bench.model_dirs import save_cross_encoder, save_encoder
from arrwdb.bench.serverproc import ServerProcess

HOST = "127.0.0.1"
SECOND = "small-256"
RERANKER = "reranker-l6"


def _model_dirs(cache_dir: Path) -> tuple[Path, Path]:
    second, reranker = cache_dir / "models" / SECOND, cache_dir / "models" / RERANKER
    if not (second / "config.json").exists():
        save_encoder(second, hidden=256, layers=4, heads=8, seed=11, pooling="mean", normalize=True, max_seq_length=256)
    if not (reranker / "config.json").exists():
        save_cross_encoder(reranker, hidden=384, layers=6, heads=12, seed=12)
    return second, reranker


def _posts(path: str, bodies: list[dict[str, Any]]) -> list[bytes]:
    return [encode_post(HOST, path, orjson.dumps(body)) for body in bodies]


def _load(port: int, requests: list[bytes], clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    return asyncio.run(closed_loop(HOST, port, requests, clients, seconds, warmup)).summary()


def _embeddings_part(server: ServerProcess, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    one = [[t] for t in texts]
    loads = {
        "embed": _posts("/v1/embed", [{"texts": t} for t in one]),
        "embeddings_float": _posts("/v1/embeddings", [{"input": t, "encoding_format": "float"} for t in one]),
        "embeddings_base64": _posts("/v1/embeddings", [{"input": t, "encoding_format": "base64"} for t in one]),
    }
    rates = {}
    for name, requests in loads.items():
        # Each run its own texts: nothing cached anywhere could help one run over another.
        rates[name] = _load(server.port, requests, clients, seconds, 1.5)
    sizes = {}
    for count in (1, 64):
        for encoding in ("float", "base64"):
            body = {"input": texts[:count], "encoding_format": encoding}
            sizes[f"{encoding}_{count}"] = len(httpx.post(f"{server.url}/v1/embeddings", json=body, timeout=60).content)
    formats = [(rows, encoding) for rows in (1, 64, 1000) for encoding in ("float", "base64")]
    render = {f"{encoding}_{rows}": _render_ms(rows, encoding) for rows, encoding in formats}
    return {
        "render_ms": render,
        "texts_per_s": {name: r["qps"] for name, r in rates.items()},
        "p50_ms": {name: r["p50_ms"] for name, r in rates.items()},
        "embeddings_over_embed": rates["embeddings_float"]["qps"] / rates["embed"]["qps"],
        "answer_bytes": sizes,
        "runs": rates,
    }


def _render_ms(rows: int, encoding: str, repeats: int = 20) -> float:
    """Milliseconds to render a /v1/embeddings answer of ``rows`` 384-d vectors (the HTTP worker's work
    for the answer, apart from the device): float JSON against base64."""
    import numpy as np

    from arrwdb.server.openai_api import _encoded
    from arrwdb.server.responses import JSON

    vectors = np.random.default_rng(1).standard_normal((rows, 384)).astype(np.float32)
    started = time.perf_counter()
    for _ in range(repeats):
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(_encoded(vectors, encoding))]
        JSON({"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    return (time.perf_counter() - started) / repeats * 1000.0


def _fill(server: ServerProcess, library: str, model: str | None, docs: list[str]) -> None:
    body: dict[str, Any] = {"name": library}
    if model is not None:
        body["model"] = model
    httpx.post(f"{server.url}/v1/libraries", json=body, timeout=60).raise_for_status()
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(docs)]
    for start in range(0, len(documents), 500):
        batch = {"documents": documents[start : start + 500]}
        httpx.post(f"{server.url}/v1/libraries/{library}/documents/batch", json=batch, timeout=600).raise_for_status()


def _two_models_part(server: ServerProcess, queries: list[str], clients: int, seconds: float) -> dict[str, Any]:
    searches = {
        library: _posts(f"/v1/libraries/{library}/search", [{"query": q, "k": 10} for q in queries])
        for library in ("minilm", "second")
    }
    alone = {lib: _load(server.port, reqs, clients, seconds, 1.5)["qps"] for lib, reqs in searches.items()}

    async def both() -> list[Any]:
        half = clients // 2
        runs = [closed_loop(HOST, server.port, reqs[::-1], half, seconds, 1.5) for reqs in searches.values()]
        return list(await asyncio.gather(*runs))

    together = {lib: r.summary()["qps"] for lib, r in zip(searches, asyncio.run(both()), strict=True)}
    shares = {lib: together[lib] / alone[lib] for lib in alone}  # the share of the device each got
    return {
        "alone_qps": alone,
        "together_qps": together,
        "device_share": shares,
        "device_total": sum(shares.values()),  # >= 0.8: each kept >= 80% of its throughput, by its share
    }


def _rerank_part(server: ServerProcess, reranker: Path, docs: list[str], seconds: float) -> dict[str, Any]:
    import torch

    from arrwdb.embed.cross_encoder import CrossEncoder
    from arrwdb.runtime.device import model_dtype

    dtype = model_dtype(torch.device("cpu"))
    encoder = CrossEncoder(reranker, RERANKER, "cpu", dtype)
    query = "how do cats hunt at night"
    encoder.score([(query, d) for d in docs[:64]])  # warm-up
    rates = {}
    for batch in (1, 64):
        done, started, cursor = 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            encoder.score([(query, d) for d in docs[cursor : cursor + batch]])
            cursor = (cursor + batch) % (len(docs) - batch)
            done += batch
        rates[batch] = done / (time.perf_counter() - started)
    plain = _posts("/v1/libraries/minilm/search", [{"query": q, "k": 10} for q in docs[:2000]])
    reranked = _posts(
        "/v1/libraries/minilm/search", [{"query": q, "k": 10, "rerank": {"candidates": 50}} for q in docs[2000:4000]]
    )
    without = _load(server.port, plain, 1, seconds, 1.0)
    with_rerank = _load(server.port, reranked, 1, seconds, 1.0)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "pairs_per_s": {str(batch): rate for batch, rate in rates.items()},
        "search_p50_ms": {"plain": without["p50_ms"], "rerank_50": with_rerank["p50_ms"]},
        "search_p99_ms": {"plain": without["p99_ms"], "rerank_50": with_rerank["p99_ms"]},
        "added_p50_ms": with_rerank["p50_ms"] - without["p50_ms"],
    }


def run_models(output: Path, cache_dir: Path, clients: int = 64, seconds: float = 5.0, docs: int = 2000) -> dict:
    second, reranker = _model_dirs(cache_dir)
    texts = sentences(40_000, seed=21)
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "ARRWDB_MODELS": f"{SECOND}={second}",
        "ARRWDB_RERANK_MODEL": f"{RERANKER}={reranker}",
        "ARRWDB_EMBED_CACHE_BYTES": "0",
        "ARRWDB_RESULT_CACHE_BYTES": "0",
    }
    # A fresh store in a temporary folder, removed afterwards: the libraries are made anew each run.
    with (
        tempfile.TemporaryDirectory(prefix="arrwdb-models-bench-") as data_dir,
        ServerProcess(Path(data_dir), env=env, log_path=output.with_suffix(".server.log")) as server,
    ):
        server.wait_settled()
        _fill(server, "minilm", None, texts[:docs])
        _fill(server, "second", SECOND, texts[:docs])
        report = {
            "benchmark": "models",
            "machine": machine_info(),
            "settings": {"clients": clients, "seconds": seconds, "documents": docs},
            "embeddings": _embeddings_part(server, texts[docs : docs + 20_000], clients, seconds),
            "two_models": _two_models_part(server, texts[docs + 20_000 : docs + 30_000], clients, seconds),
            "rerank": _rerank_part(server, reranker, texts[docs + 30_000 :], seconds),
        }
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return report


def format_models(report: dict[str, Any]) -> str:
    e, t, r = report["embeddings"], report["two_models"], report["rerank"]
    lines = ["route                     texts/s   p50_ms"]
    for name, rate in e["texts_per_s"].items():
        lines.append(f"{name:<24} {rate:8.1f} {e['p50_ms'][name]:8.1f}")
    lines.append(f"/v1/embeddings (float) / /v1/embed: {e['embeddings_over_embed']:.3f}")
    lines.append("answer bytes: " + ", ".join(f"{k} {v}" for k, v in e["answer_bytes"].items()))
    lines.append("answer render ms: " + ", ".join(f"{k} {v:.3f}" for k, v in e["render_ms"].items()))
    lines.append("model      alone_qps  together_qps  device_share")
    for lib in t["alone_qps"]:
        alone, together, share = t["alone_qps"][lib], t["together_qps"][lib], t["device_share"][lib]
        lines.append(f"{lib:<10} {alone:9.1f} {together:13.1f} {share:13.3f}")
    lines.append(f"device shares together: {t['device_total']:.3f}")
    pairs = r["pairs_per_s"]
    lines.append(f"rerank ({r['dtype']}): {pairs['1']:.1f} pairs/s at batch 1, {pairs['64']:.1f} at batch 64")
    lines.append(
        f"search p50: {r['search_p50_ms']['plain']:.1f} ms plain, {r['search_p50_ms']['rerank_50']:.1f} ms "
        f"with rerank 50 (+{r['added_p50_ms']:.1f} ms)"
    )
    return "\n".join(lines)
