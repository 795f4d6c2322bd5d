"""Every /v1/libraries row of API.md against a real server."""

from __future__ import annotations

import httpx
import pytest

from arrwdb.client.client import ApiError


def test_create_with_defaults(client):
    lib = client.create_library("docs")
    assert lib["name"] == "docs"
    assert lib["dimension"] == 384
    assert lib["index_type"] == "brute_force"
    assert lib["metric"] == "cosine"
    assert lib["index_params"] == {}
    assert lib["document_count"] == 0
    assert lib["id"] and lib["created_at"].endswith("Z")


@pytest.mark.parametrize("index_type", ["brute_force", "ivf", "hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_every_index_type_and_metric_is_accepted(client, index_type, metric):
    lib = client.create_library(f"{index_type}-{metric}", dimension=8, index_type=index_type, metric=metric)
    assert (lib["index_type"], lib["metric"], lib["dimension"]) == (index_type, metric, 8)
    vectors = {f"d{i}": [float((i * 7 + j) % 5) + 0.5 for j in range(8)] for i in range(6)}
    client.add_documents(lib["id"], [{"id": k, "embedding": v} for k, v in vectors.items()])
    hits = client.search(lib["id"], embedding=vectors["d3"], k=3)
    assert len(hits) == 3
    assert hits[0]["document_id"] == "d3"  # exact until an ANN index is built


def test_index_params_are_kept(client):
    lib = client.create_library("h", index_type="hnsw", index_params={"m": 16, "ef_search": 64})
    assert lib["index_params"] == {"m": 16, "ef_search": 64}
    assert client.get_library("h")["index_params"] == {"m": 16, "ef_search": 64}


def test_duplicate_name_is_409(client):
    client.create_library("docs")
    with pytest.raises(ApiError) as err:
        client.create_library("docs")
    assert err.value.status == 409
    assert err.value.type == "conflict"
    assert len(client.list_libraries()) == 1


def test_list_get_by_id_and_name(client):
    a = client.create_library("alpha")
    b = client.create_library("beta", dimension=3, metric="l2")
    listed = client.list_libraries()
    assert [lib["name"] for lib in listed] == ["alpha", "beta"]
    assert client.get_library(a["id"]) == a
    assert client.get_library("beta")["id"] == b["id"]


def test_delete_then_404(client):
    lib = client.create_library("gone")
    client.add_document("gone", {"text": "some words"})
    client.delete_library(lib["id"])
    for call in (lambda: client.get_library("gone"), lambda: client.statistics(lib["id"])):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404
    assert client.list_libraries() == []
    # The name is free again, and the new library starts empty.
    assert client.create_library("gone")["document_count"] == 0


def test_unknown_library_is_404_everywhere(client):
    calls = [
        lambda: client.get_library("nope"),
        lambda: client.delete_library("nope"),
        lambda: client.statistics("nope"),
        lambda: client.add_document("nope", {"text": "x"}),
        lambda: client.list_documents("nope"),
        lambda: client.search("nope", query="x"),
    ]
    for call in calls:
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404
        assert err.value.type == "not_found"


def test_statistics(client):
    client.create_library("s")
    client.add_documents("s", [{"text": "one"}, {"text": "two"}, {"text": " ".join(["long"] * 600)}])
    stats = client.statistics("s")
    assert stats["document_count"] == 3
    assert stats["documents_loaded"] is True
    assert stats["chunk_count"] == stats["vector_count"] >= 4  # the long text has several chunks
    assert stats["dimension"] == 384
    assert stats["index_type"] == "brute_force"
    assert stats["metric"] == "cosine"
    assert stats["index"]["ntotal"] == stats["vector_count"]
    assert stats["memory_bytes"] > 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "bad name with spaces"},
        {"name": ""},
        {"name": "x" * 257},
        {"name": "d", "dimension": 0},
        {"name": "d", "dimension": 4097},
        {"name": "d", "dimension": "384"},
        {"name": "d", "dimension": 3.5},
        {"name": "d", "index_type": "lsh"},
        {"name": "d", "metric": "hamming"},
        {"name": "d", "index_params": {"nlist": 8}},
        {"name": "d", "index_type": "ivf", "index_params": {"nlist": -1}},
        {"name": "d", "index_type": "hnsw", "index_params": {"m": "16"}},
        {"name": "d", "unexpected": 1},
        {"dimension": 3},
    ],
)
def test_bad_library_bodies_are_422(server, client, body):
    response = httpx.post(f"{server.url}/v1/libraries", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_input"
    assert response.json()["error"]["message"]
    assert client.list_libraries() == []


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"[1, 2]", b'"docs"', b"null"])
def test_malformed_or_non_object_bodies(server, client, raw):
    response = httpx.post(f"{server.url}/v1/libraries", content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422)
    assert set(response.json()["error"]) == {"type", "message"}
    assert client.list_libraries() == []
