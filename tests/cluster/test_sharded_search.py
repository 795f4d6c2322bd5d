"""Sharded libraries on a real Ray cluster: answers equal one engine's over all the rows, documents are
routed per shard, and nothing of the cluster listens beyond loopback."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess

DIM = 16
ROWS = 240
WORDS = ["apple", "river", "stone", "cloud", "ember", "frost"]


def _docs(seed: int = 3) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    return [
        {
            "id": f"doc-{i:04d}",
            "text": f"{WORDS[i % 6]} {WORDS[(i * 7) % 6]} number {i}",
            "embedding": vectors[i].tolist(),
            "metadata": {"g": i % 5, "even": i % 2 == 0},
        }
        for i in range(ROWS)
    ]


def _library(client: httpx.Client, shards: int, index_type: str, params: dict[str, Any]) -> str:
    name = f"lib-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "dimension": DIM, "shards": shards, "index_type": index_type, "index_params": params}
    created = client.post("/v1/libraries", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["shards"] == shards
    docs = _docs()
    for start in range(0, ROWS, 80):
        written = client.post(f"/v1/libraries/{name}/documents/batch", json={"documents": docs[start : start + 80]})
        assert written.status_code == 201, written.text
    return name


def _search(client: httpx.Client, name: str, body: dict[str, Any]) -> Any:
    answer = client.post(f"/v1/libraries/{name}/search", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _same(a: Any, b: Any) -> None:
    """Equal answers: the same hits in the same order, scores equal to float32 rounding."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a.keys() - {"took_ms"}:
            if key == "score":
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)
            else:
                _same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b


INDEXES = [
    ("brute_force", {}, {}),
    ("hnsw", {"m": 16, "ef_construction": 200}, {"ef_search": 1000}),  # ef >= rows: exhaustive
    ("ivf", {"nlist": 4}, {"nprobe": 4}),  # every list probed: exhaustive
]


@pytest.mark.parametrize(("index_type", "params", "query_params"), INDEXES, ids=[i[0] for i in INDEXES])
def test_sharded_answers_equal_one_engines(
    client: httpx.Client, index_type: str, params: dict[str, Any], query_params: dict[str, Any]
) -> None:
    one = _library(client, 1, index_type, params)
    three = _library(client, 3, index_type, params)  # 3 shards on 2 engines
    rng = np.random.default_rng(11)
    bodies: list[dict[str, Any]] = []
    for _ in range(4):
        vector = rng.normal(size=DIM).astype(np.float32).tolist()
        base = {"embedding": vector, "k": 7, "params": query_params}
        bodies += [
            base,
            {**base, "filter": {"g": {"$in": [1, 3]}}},
            {**base, "filter": {"even": True}, "offset": 4},
            {**base, "score_threshold": 0.2, "k": 30},
            {**base, "group_by": "g", "group_size": 2, "k": 3},
            {**base, "group_by": "document_id"},
        ]
    for body in bodies:
        _same(_search(client, three, body), _search(client, one, body))
    batch = {"queries": bodies[:6]}
    answers = [client.post(f"/v1/libraries/{lib}/search/batch", json=batch) for lib in (three, one)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    _same(answers[0].json()["results"], answers[1].json()["results"])


def test_keyword_and_hybrid_answers_are_whole(client: httpx.Client) -> None:
    name = _library(client, 2, "brute_force", {})
    vector = _docs()[5]["embedding"]
    keyword = _search(client, name, {"mode": "keyword", "keywords": "ember", "k": 10})["results"]
    assert len(keyword) == 10 and all("ember" in hit["text"] for hit in keyword)
    assert [h["score"] for h in keyword] == sorted((h["score"] for h in keyword), reverse=True)
    hybrid = _search(client, name, {"mode": "hybrid", "embedding": vector, "keywords": "frost", "k": 5})["results"]
    assert hybrid[0]["document_id"] == "doc-0005"  # its own vector, and its text holds "frost"
    assert len(hybrid) == 5


def test_documents_are_routed_and_listed_across_shards(client: httpx.Client) -> None:
    name = _library(client, 3, "brute_force", {})
    seen, cursor = [], None
    for _ in range(100):
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/libraries/{name}/documents", params=params).json()
        seen += [doc["id"] for doc in page["documents"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert seen == sorted(doc["id"] for doc in _docs())
    assert client.get(f"/v1/libraries/{name}/documents/doc-0042").json()["metadata"] == {"g": 2, "even": True}
    patched = client.patch(f"/v1/libraries/{name}/documents/doc-0042", json={"metadata": {"g": 9}})
    assert patched.status_code == 200, patched.text
    assert (
        _search(client, name, {"embedding": _docs()[42]["embedding"], "k": 1, "filter": {"g": 9}})["results"][0][
            "document_id"
        ]
        == "doc-0042"
    )
    deleted = client.post(f"/v1/libraries/{name}/documents/delete", json={"filter": {"g": 0}})
    assert deleted.json() == {"deleted": ROWS // 5}
    assert client.delete(f"/v1/libraries/{name}/documents/doc-0043").status_code == 204
    assert client.get(f"/v1/libraries/{name}/documents/doc-0043").status_code == 404
    stats = client.get(f"/v1/libraries/{name}/statistics").json()
    assert stats["document_count"] == ROWS - ROWS // 5 - 1
    assert [s["shard"] for s in stats["shards"]] == [0, 1, 2]
    assert sum(s["document_count"] for s in stats["shards"]) == stats["document_count"]
    assert client.get(f"/v1/libraries/{name}").json()["document_count"] == stats["document_count"]


def test_refusals(client: httpx.Client) -> None:
    too_many = client.post("/v1/libraries", json={"name": "r", "dimension": 4, "replicas": 3})  # 2 engines
    assert too_many.status_code == 422 and "at most 2" in too_many.json()["error"]["message"]
    assert client.post("/v1/libraries", json={"name": "r", "dimension": 4, "shards": 0}).status_code == 422
    name = _library(client, 2, "brute_force", {})
    assert client.post("/v1/libraries", json={"name": name, "dimension": 4}).status_code == 409
    bad = client.post(f"/v1/libraries/{name}/documents", json={"id": "x", "embedding": [1.0, 2.0]})
    assert bad.status_code == 422 and "dimension" in bad.json()["error"]["message"]
    text = client.post(f"/v1/libraries/{name}/search", json={"query": "hello"})
    assert text.status_code == 422 and repr(name) in text.json()["error"]["message"]
    assert client.delete(f"/v1/libraries/{name}").status_code == 204
    assert client.get(f"/v1/libraries/{name}").status_code == 404
    assert client.post(f"/v1/libraries/{name}/search", json={"embedding": [0.0] * DIM}).status_code == 404


def test_cluster_view_and_metrics(client: httpx.Client) -> None:
    name = _library(client, 2, "brute_force", {})
    engines = client.get("/v1/cluster").json()["engines"]
    assert sorted(e["name"] for e in engines) == ["arrwdb-engine-0", "arrwdb-engine-1"]
    held = [s for e in engines for s in e["shards"] if s["library"] == name]
    assert sorted(s["shard"] for s in held) == [0, 1]
    assert all(s["role"] == "primary" and s["in_sync"] and s["sequence"] > 0 for s in held)
    assert all(e["address"] == "127.0.0.1" and e["device"] == "cpu" for e in engines)
    metrics = client.get("/metrics").text
    assert "arrwdb_cluster_engines_up 2" in metrics
    assert 'engine="arrwdb-engine-0"' in metrics and 'engine="arrwdb-engine-1"' in metrics
    # The HTTP workers' own figures, added up over the workers (server/http_telemetry.py).
    assert 'arrwdb_http_requests_total{method="GET",route="/v1/cluster",status="200"}' in metrics


def test_two_http_workers_serve_as_frontends(ray_server: tuple[LocalRayCluster, ServerProcess]) -> None:
    from tests.processes import worker_pids

    url = ray_server[1].url
    assert len(worker_pids(url, 2)) == 2
    name = f"w-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=url, timeout=60) as first:
        assert first.post("/v1/libraries", json={"name": name, "dimension": DIM, "shards": 2}).status_code == 201
    for _ in range(6):  # new connections: each lands on either worker, and every worker knows the library
        with httpx.Client(base_url=url, timeout=60) as other:
            assert other.get(f"/v1/libraries/{name}").json()["shards"] == 2


def test_nothing_listens_beyond_loopback(ray_server: tuple[LocalRayCluster, ServerProcess]) -> None:
    cluster, _ = ray_server
    assert cluster.pids()
    assert cluster.listening_beyond_loopback() == []
