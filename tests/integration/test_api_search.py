"""Search, batch search, /v1/embed, filters, and the system endpoints against a real server."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from arrwdb.client.client import ApiError

CORPUS = {
    "cat": ("The cat sleeps on the warm windowsill.", {"topic": "pets", "year": 2019, "tags": ["animal", "home"]}),
    "dog": ("A dog fetched the ball in the park.", {"topic": "pets", "year": 2021, "tags": ["animal"]}),
    "stocks": ("Stock markets fell sharply after the announcement.", {"topic": "finance", "year": 2022}),
    "bonds": ("Bond yields rose as inflation expectations climbed.", {"topic": "finance", "year": 2020}),
    "rain": ("Heavy rain is expected across the region tomorrow.", {"topic": "weather", "year": 2021.5}),
    "flag": ("A flag with a boolean value.", {"topic": "misc", "year": True}),
}


@pytest.fixture
def corpus(client):
    client.create_library("news")
    client.add_documents(
        "news", [{"id": k, "title": k.upper(), "text": t, "metadata": m} for k, (t, m) in CORPUS.items()]
    )
    return client


def ids(hits):
    return [hit["document_id"] for hit in hits]


def test_text_search_ranks_by_meaning(server, corpus):
    assert ids(corpus.search("news", query="kitten napping", k=1)) == ["cat"]
    assert ids(corpus.search("news", query="interest rates and inflation", k=1)) == ["bonds"]
    hits = corpus.search("news", query="puppy playing", k=6)
    assert len(hits) == 6
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    answer = httpx.post(f"{server.url}/v1/libraries/news/search", json={"query": "puppy playing", "k": 6}).json()
    assert answer["took_ms"] > 0 and answer["results"] == hits
    top = hits[0]
    assert top == {
        "document_id": "dog",
        "chunk_index": 0,
        "score": top["score"],
        "title": "DOG",
        "text": CORPUS["dog"][0],
        "metadata": CORPUS["dog"][1],
    }


def test_include_text_false(corpus):
    hits = corpus.search("news", query="weather", k=2, include_text=False)
    assert all(h["text"] is None for h in hits)
    assert all(h["title"] for h in hits)


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"topic": "finance"}, {"stocks", "bonds"}),
        ({"topic": {"$ne": "pets"}}, {"stocks", "bonds", "rain", "flag"}),
        ({"year": {"$gte": 2021}}, {"dog", "stocks", "rain"}),
        ({"year": {"$lt": 2020}}, {"cat"}),
        ({"year": {"$in": [2019, 2022]}}, {"cat", "stocks"}),
        ({"year": {"$nin": [2019, 2022]}}, {"dog", "bonds", "rain", "flag"}),
        ({"tags": "animal"}, {"cat", "dog"}),
        ({"$or": [{"topic": "weather"}, {"year": 2019}]}, {"rain", "cat"}),
        ({"$and": [{"topic": "pets"}, {"year": {"$gt": 2020}}]}, {"dog"}),
        ({"$not": {"topic": "pets"}}, {"stocks", "bonds", "rain", "flag"}),
        ({"year": True}, {"flag"}),
        ({"missing": {"$ne": 1}}, set(CORPUS)),
        ({"missing": 1}, set()),
    ],
)
def test_filters_return_only_and_all_matches(corpus, filter_, expected):
    got = corpus.search("news", query="anything at all", k=10, filter=filter_)
    assert set(ids(got)) == expected


def test_filter_returns_k_when_k_match(client):
    client.create_library("many", dimension=2, metric="l2")
    docs = [{"id": f"d{i}", "embedding": [float(i), 0.0], "metadata": {"even": i % 2 == 0}} for i in range(200)]
    client.add_documents("many", docs)
    # The 10 nearest to the origin are d0..d9, but only odd ids match: the filter applies before top-k.
    got = client.search("many", embedding=[0.0, 0.0], k=10, filter={"even": False})
    assert ids(got) == [f"d{i}" for i in range(1, 20, 2)]
    assert [h["score"] for h in got] == [-float(i * i) for i in range(1, 20, 2)]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_vector_search_matches_numpy(client, metric):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(300, 16)).astype(np.float32)
    client.create_library("v", dimension=16, metric=metric)
    client.add_documents("v", [{"id": str(i), "embedding": row.tolist()} for i, row in enumerate(data)])
    query = rng.normal(size=16).astype(np.float32)
    if metric == "cosine":
        normed = data / np.linalg.norm(data, axis=1, keepdims=True)
        scores = normed @ (query / np.linalg.norm(query))
    elif metric == "ip":
        scores = data @ query
    else:
        scores = -((data - query) ** 2).sum(axis=1)
    expected = np.argsort(-scores)[:10]
    got = client.search("v", embedding=query.tolist(), k=10)
    assert [int(h["document_id"]) for h in got] == expected.tolist()
    assert np.allclose([h["score"] for h in got], scores[expected], rtol=1e-4, atol=1e-4)


def _b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def test_embedding_base64_queries_match_json_queries(client):
    rng = np.random.default_rng(8)
    data = rng.normal(size=(200, 16)).astype(np.float32)
    client.create_library("b64", dimension=16, metric="l2")
    client.add_documents("b64", [{"id": str(i), "embedding": row.tolist()} for i, row in enumerate(data)])
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    listed = client.search_batch("b64", [{"embedding": q.tolist(), "k": 7} for q in queries])
    encoded = client.search_batch("b64", [{"embedding_base64": _b64(q), "k": 7} for q in queries])
    assert encoded == listed
    single = client.search("b64", embedding_base64=_b64(queries[0]), k=7)
    assert single == listed[0]


def test_search_batch(corpus):
    queries = [{"query": "kitten"}, {"query": "inflation", "k": 2}, {"query": "rain", "filter": {"topic": "pets"}}]
    got = corpus.search_batch("news", queries)
    assert [len(r) for r in got] == [6, 2, 2]
    assert got[0][0]["document_id"] == "cat"
    assert got[1][0]["document_id"] == "bonds"
    assert {h["document_id"] for h in got[2]} == {"cat", "dog"}
    # The same queries one at a time give the same answers.
    for query, batched in zip(queries, got, strict=True):
        single = corpus.search("news", **query)
        assert [h["document_id"] for h in single] == [h["document_id"] for h in batched]


def test_batch_and_timing_headers(server, corpus):
    response = httpx.post(f"{server.url}/v1/libraries/news/search", json={"query": "dogs"})
    assert response.status_code == 200
    assert float(response.headers["x-queue-ms"]) >= 0
    assert float(response.headers["x-compute-ms"]) >= 0
    assert int(response.headers["x-batch-size"]) >= 1
    assert int(response.headers["content-length"]) == len(response.content)
    assert "chunked" not in response.headers.get("transfer-encoding", "")


BAD_QUERIES = [
    {"k": 0, "query": "x"},
    {"k": 10**9, "query": "x"},
    {"k": -1, "query": "x"},
    {"k": "10", "query": "x"},
    {"query": "x", "embedding": [0.1] * 384},
    {},
    {"query": ""},
    {"embedding": [0.1] * 3},
    {"embedding": [0.0] * 384},
    {"query": "x", "filter": {"year": {"$regex": "a"}}},
    {"query": "x", "filter": {"$and": {"a": 1}}},
    {"query": "x", "filter": [1]},
    {"query": "x", "params": {"ef_search": 0}},
    {"query": "x", "params": {"unknown": 1}},
    {"query": "x", "include_text": "yes"},
    {"embedding_base64": "not base64!"},
    {"embedding_base64": base64.b64encode(b"abc").decode()},  # not whole float32 values
    {"embedding_base64": base64.b64encode(np.zeros(3, "<f4").tobytes()).decode()},  # wrong dimension
    {"query": "x", "embedding_base64": base64.b64encode(np.ones(384, "<f4").tobytes()).decode()},
    {"embedding": [0.1] * 384, "embedding_base64": base64.b64encode(np.ones(384, "<f4").tobytes()).decode()},
]


@pytest.mark.parametrize("body", BAD_QUERIES)
def test_bad_queries_are_422(server, corpus, body):
    response = httpx.post(f"{server.url}/v1/libraries/news/search", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_input"
    batch = httpx.post(f"{server.url}/v1/libraries/news/search/batch", json={"queries": [{"query": "ok"}, body]})
    assert batch.status_code == 422
    assert "queries" in batch.json()["error"]["message"]


def test_batch_search_limits(server, corpus):
    for queries in ([], [{"query": "x"}] * 1001):
        response = httpx.post(f"{server.url}/v1/libraries/news/search/batch", json={"queries": queries})
        assert response.status_code == 422


def test_embed(client):
    got = client.embed(["hello world", "a second sentence"])
    assert got["dimension"] == 384
    vectors = np.asarray(got["embeddings"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("body", [{"texts": []}, {"texts": [""]}, {"texts": ["ok", " "]}, {"texts": "x"}, {}])
def test_bad_embed_requests(server, body):
    response = httpx.post(f"{server.url}/v1/embed", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"]


def test_embed_matches_document_vectors(client):
    client.create_library("e")
    text = "Embedding the same text twice gives the same vector."
    vector = client.embed([text])["embeddings"][0]
    hit = client.search("e", embedding=vector, k=1)
    assert hit == []
    client.add_document("e", {"id": "same", "text": text})
    hit = client.search("e", embedding=vector, k=1)[0]
    assert hit["document_id"] == "same"
    assert hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_health_ready_metrics_docs(server, corpus):
    assert corpus.health()["status"] == "ok"
    assert corpus.ready()["status"] == "ready"
    corpus.search("news", query="x")
    text = corpus.metrics()
    assert 'arrwdb_http_requests_total{method="POST",route="/v1/libraries/{library}/search",status="200"}' in text
    assert "arrwdb_http_request_seconds_bucket" in text
    assert "arrwdb_batch_size_bucket" in text
    # The metrics request itself is the one in flight while they are rendered; the search has ended.
    assert "arrwdb_http_requests_in_flight 1.0" in text.splitlines()
    openapi = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/libraries/{library}/search" in openapi["paths"]
    assert "Query" in openapi["components"]["schemas"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_unknown_route_and_method_use_the_error_shape(server):
    missing = httpx.get(f"{server.url}/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    wrong = httpx.put(f"{server.url}/v1/libraries")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["type"] == "method_not_allowed"


def test_request_timeout_header(server, corpus):
    bad = httpx.post(
        f"{server.url}/v1/libraries/news/search", json={"query": "x"}, headers={"x-request-timeout-ms": "abc"}
    )
    assert bad.status_code == 400
    ok = httpx.post(
        f"{server.url}/v1/libraries/news/search", json={"query": "x"}, headers={"x-request-timeout-ms": "5000"}
    )
    assert ok.status_code == 200


def test_document_errors_are_404_for_unknown_ids(corpus):
    for call in (lambda: corpus.get_document("news", "nope"), lambda: corpus.delete_document("news", "nope")):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404
