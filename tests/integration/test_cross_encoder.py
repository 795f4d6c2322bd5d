"""Reranking with a cross-encoder (ARRWDB_RERANK_MODEL): a one-label BERT classifier built with seeded
random weights and saved as a local directory, as a user's ms-marco cross-encoder is.  POST /v1/rerank
(Cohere / TEI / Infinity shape) and ``rerank: {candidates}`` in search, checked against
sentence-transformers' CrossEncoder scores for the same directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from arrwdb.bench.model_dirs import save_cross_encoder
from tests.integration.test_batching import block_worker
from tests.processes import ADMIN_KEY, metric_sum, start_processes

QUERY = "how do cats hunt at night"
DOCUMENTS = [
    "cats hunt small animals in the dark with their eyes",
    "the stock market closed higher today",
    "dogs sleep most of the day",
    "night vision lets cats see in low light",
    "a recipe for bread with yeast and flour",
    "owls and cats are nocturnal hunters",
]


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_cross_encoder(tmp_path_factory.mktemp("rerank") / "ms-marco-tiny", hidden=64, layers=2, heads=2, seed=3)


@pytest.fixture(scope="module")
def expected(reranker_dir: Path) -> np.ndarray:
    """sentence-transformers' CrossEncoder scores of (QUERY, each document)."""
    from arrwdb.embed.hub_kernels import load_hub_kernels_first

    load_hub_kernels_first()
    from sentence_transformers import CrossEncoder

    return np.asarray(CrossEncoder(str(reranker_dir), device="cpu").predict([(QUERY, d) for d in DOCUMENTS]))


@pytest.fixture
def server(start_server: Any, reranker_dir: Path) -> Any:
    return start_server(rerank_model=str(reranker_dir), embed_precision="float32")


def test_rerank_scores_are_those_of_sentence_transformers(server: Any, expected: np.ndarray) -> None:
    body = {"query": QUERY, "documents": DOCUMENTS, "return_documents": True}
    answer = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=60.0)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["model"] == "ms-marco-tiny"
    results = data["results"]
    assert [r["index"] for r in results] == np.argsort(-expected, kind="stable").tolist()  # best first
    for result in results:
        assert result["relevance_score"] == pytest.approx(float(expected[result["index"]]), abs=1e-5)
        assert result["document"] == DOCUMENTS[result["index"]]
    top = httpx.post(f"{server.url}/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "top_n": 2}).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in results[:2]]
    assert "document" not in top["results"][0]
    models = httpx.get(f"{server.url}/v1/models").json()["data"]
    card = next(m for m in models if m["id"] == "ms-marco-tiny")
    assert card["kind"] == "rerank" and card["memory_bytes"] > 0 and card["max_tokens"] == 512


def test_search_reranks_its_candidates(server: Any, expected: np.ndarray) -> None:
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        http.post("/v1/libraries", json={"name": "docs"})
        docs = [{"id": f"d{i}", "text": text} for i, text in enumerate(DOCUMENTS)]
        assert http.post("/v1/libraries/docs/documents/batch", json={"documents": docs}).status_code == 201
        query = {"query": QUERY, "k": 3, "rerank": {"candidates": len(DOCUMENTS)}}
        hits = http.post("/v1/libraries/docs/search", json=query).json()["results"]
        # Every document was a candidate: the top 3 are the cross-encoder's, with its scores.
        best = np.argsort(-expected, kind="stable")[:3]
        assert [h["document_id"] for h in hits] == [f"d{i}" for i in best]
        assert [h["score"] for h in hits] == pytest.approx([float(expected[i]) for i in best], abs=1e-5)
        assert hits[0]["text"] == DOCUMENTS[best[0]]
        # Fewer candidates: only the vector search's top 2 are reranked (and k cuts to what there is).
        plain = http.post("/v1/libraries/docs/search", json={"query": QUERY, "k": 2}).json()["results"]
        query = {"query": QUERY, "k": 2, "rerank": {"candidates": 2}, "include_text": False}
        reranked = http.post("/v1/libraries/docs/search", json=query).json()["results"]
        assert {h["document_id"] for h in reranked} == {h["document_id"] for h in plain}
        assert all(h["text"] is None for h in reranked)
        batch = {"queries": [{"query": QUERY, "k": 3, "rerank": {"candidates": 6}}, {"query": QUERY, "k": 3}]}
        results = http.post("/v1/libraries/docs/search/batch", json=batch).json()["results"]
        assert [h["document_id"] for h in results[0]] == [f"d{i}" for i in best]
        assert len(results[1]) == 3

        for bad, status in (
            ({"embedding": [0.1] * 384, "rerank": {"candidates": 5}}, 422),
            ({"query": QUERY, "rerank": {"candidates": 0}}, 422),
            ({"query": QUERY, "rerank": {"candidates": 5, "model": "nope"}}, 404),
        ):
            answer = http.post("/v1/libraries/docs/search", json=bad)
            assert answer.status_code == status, answer.text
            assert answer.json()["error"]["message"]


def test_rerank_deadline_and_abort_cost_no_compute(server: Any) -> None:
    """Pairs queued behind a busy device: a passed deadline is a 504, a client gone is dropped, and
    neither reaches the cross-encoder."""
    body = {"query": QUERY, "documents": DOCUMENTS}
    job = block_worker(server)
    try:
        late = httpx.post(f"{server.url}/v1/rerank", json=body, headers={"X-Request-Timeout-Ms": "200"}, timeout=10)
        assert late.status_code == 504 and late.json()["error"]["type"] == "deadline_exceeded"
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/rerank", json=body, timeout=0.3)  # the client gives up and goes
        time.sleep(0.3)  # the server notices the disconnect
    finally:
        job.release.set()
    time.sleep(0.3)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert metric_sum(metrics, "arrwdb_requests_dropped_total", reason="deadline") >= 1
    assert metric_sum(metrics, "arrwdb_requests_dropped_total", reason="disconnected") >= 1
    assert metric_sum(metrics, "arrwdb_batch_size_count", queue="rerank") == 0  # no batch ran
    assert httpx.post(f"{server.url}/v1/rerank", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"query": "", "documents": ["a"]}, 422),
        ({"query": "q", "documents": []}, 422),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 422),
        ({"query": "q", "documents": ["a"], "model": "other"}, 404),
        ({"query": "q"}, 422),
    ],
)
def test_bad_rerank_requests_are_4xx(server: Any, body: dict, status: int) -> None:
    answer = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=60.0)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["type"] and answer.json()["error"]["message"]


def test_without_a_reranker_rerank_is_a_clear_4xx(start_server: Any) -> None:
    server = start_server()
    answer = httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert answer.status_code == 404 and "ARRWDB_RERANK_MODEL" in answer.json()["error"]["message"]
    httpx.post(f"{server.url}/v1/libraries", json={"name": "l"})
    search = httpx.post(f"{server.url}/v1/libraries/l/search", json={"query": "q", "rerank": {"candidates": 5}})
    assert search.status_code == 404 and "ARRWDB_RERANK_MODEL" in search.json()["error"]["message"]


def test_rerank_through_http_workers(tmp_path: Path, reranker_dir: Path, expected: np.ndarray) -> None:
    server = start_processes(tmp_path / "data", workers=2, ARRWDB_RERANK_MODEL=f"tiny={reranker_dir}")
    try:
        minted = httpx.post(f"{server.url}/v1/admin/keys", json={"tenant": "t"}, headers={"X-API-Key": ADMIN_KEY})
        headers = {"X-API-Key": minted.json()["key"]}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60.0) as http:
            answer = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}).json()
            assert answer["model"] == "tiny"
            scores = {r["index"]: r["relevance_score"] for r in answer["results"]}
            # The engine process runs the model in its automatic precision (bf16 on an AMX CPU).
            np.testing.assert_allclose([scores[i] for i in range(len(DOCUMENTS))], expected, atol=2e-2)
            http.post("/v1/libraries", json={"name": "docs"})
            docs = [{"id": f"d{i}", "text": text} for i, text in enumerate(DOCUMENTS)]
            assert http.post("/v1/libraries/docs/documents/batch", json={"documents": docs}).status_code == 201
            query = {"query": QUERY, "k": 2, "rerank": {"candidates": 6}}
            hits = http.post("/v1/libraries/docs/search", json=query).json()["results"]
            assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    finally:
        server.stop()
