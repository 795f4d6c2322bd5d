"""Keyword and hybrid search, groups, PATCH and delete by filter through ``arrwdb serve --workers 2``
(HTTP workers -> RemoteEngine -> ZMQ -> the engine process): every new field crosses the engine
protocol, and the answers equal the single-process server's on the same store."""

from __future__ import annotations

import httpx
import pytest

from tests.processes import start_processes

TEXTS = [
    "The lighthouse keeper trimmed the lamp at dusk.",
    "A storm drove the fishing boats back to the harbour.",
    "Gulls followed the ferry across the bay.",
    "The harbour master logged every ship that docked.",
    "Fog rolled over the lighthouse and the cliffs.",
    "Children built sandcastles near the pier.",
]
QUERIES = [
    {"query": "lighthouse in fog", "k": 3, "mode": "hybrid"},
    {"query": "harbour ships", "k": 3, "mode": "keyword", "filter": {"even": True}},
    {"query": "harbour ships", "k": 2, "mode": "hybrid", "fusion": {"method": "dbsf", "weights": [0.5, 1.5]}},
    {"query": "sea birds", "k": 2, "offset": 1, "score_threshold": -1.0},
    {"query": "the", "k": 2, "mode": "hybrid", "group_by": "even", "group_size": 2, "include_text": False},
    {"embedding_base64": None, "query": "boats", "k": 3},
]


def test_retrieval_through_http_workers_equals_one_process(tmp_path):
    data_dir = tmp_path / "data"
    server = start_processes(data_dir, workers=2, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.post("/v1/libraries", json={"name": "coast"}).status_code == 201
            docs = [
                {"id": f"d{i}", "title": f"T{i}", "text": text, "metadata": {"even": i % 2 == 0}}
                for i, text in enumerate(TEXTS)
            ]
            assert client.post("/v1/libraries/coast/documents/batch", json={"documents": docs}).status_code == 201
            patched = client.patch("/v1/libraries/coast/documents/d5", json={"metadata": {"even": False}})
            assert patched.status_code == 200 and patched.json()["metadata"] == {"even": False}
            assert client.patch("/v1/libraries/coast/documents/nope", json={"title": "x"}).status_code == 404
            gone = client.post("/v1/libraries/coast/documents/delete", json={"filter": {"even": {"$ne": True}}})
            assert gone.json() == {"deleted": 3}  # d1, d3 and the patched d5
            assert client.post("/v1/libraries/coast/documents/delete", json={"ids": ["d1"]}).json() == {"deleted": 0}
            many = client.post("/v1/libraries/coast/search/batch", json={"queries": QUERIES})
            assert many.status_code == 200, many.text
            one = [client.post("/v1/libraries/coast/search", json=q).json() for q in QUERIES]
            stats = client.get("/v1/libraries/coast/statistics").json()
    finally:
        server.stop()
    results = many.json()["results"]
    assert results[0][0]["document_id"] == "d4"  # "lighthouse" and "fog": first in both legs
    assert {hit["document_id"] for hit in results[1]} <= {"d0", "d2", "d4"}
    assert [group["key"] for group in results[4]] == [True]  # every odd document was deleted
    assert [answer.get("results", answer.get("groups")) for answer in one] == results
    assert stats["keyword_index"]["rows"] == 3 and stats["document_count"] == 3
    single = start_processes(data_dir, workers=0, ARRWDB_ADMIN_KEY="")
    try:
        with httpx.Client(base_url=single.url, timeout=60) as client:
            reference = client.post("/v1/libraries/coast/search/batch", json={"queries": QUERIES}).json()["results"]
    finally:
        single.stop()
    # The same hits; scores equal to float32 precision (a text query's embedding may come from a batch
    # of another shape in the new process).
    assert _shape(results) == _shape(reference)
    assert _scores(results) == pytest.approx(_scores(reference), rel=1e-5, abs=1e-6)


def _hits(answer):
    for entry in answer:
        yield from entry["hits"] if "hits" in entry else [entry]


def _shape(results):
    return [
        [entry.get("key", entry.get("document_id")) for entry in answer]
        + [(h["document_id"], h["chunk_index"], h["text"], h["metadata"]) for h in _hits(answer)]
        for answer in results
    ]


def _scores(results):
    return [h["score"] for answer in results for h in _hits(answer)]
