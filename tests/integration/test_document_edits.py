"""PATCH of a document's title and metadata, and POST .../documents/delete by ids or by filter,
against a real server (API.md, Additions (v1.1): Documents)."""

from __future__ import annotations

import httpx
import pytest

DOCS = [
    {"id": f"d{i}", "title": f"T{i}", "text": f"Note number {i} about gardens.", "metadata": {"n": i, "kind": k}}
    for i, k in enumerate(["a", "b", "a", "b", "a"])
]


@pytest.fixture
def notes(client):
    client.create_library("notes")
    client.add_documents("notes", DOCS)
    return client


def url(server, path=""):
    return f"{server.url}/v1/libraries/notes/documents{path}"


def search_ids(server, body):
    answer = httpx.post(f"{server.url}/v1/libraries/notes/search", json={"query": "gardens", "k": 10, **body})
    assert answer.status_code == 200, answer.text
    return sorted(hit["document_id"] for hit in answer.json()["results"])


def test_patch_merges_title_and_metadata_without_reembedding(server, notes):
    before = httpx.post(
        f"{server.url}/v1/libraries/notes/search", json={"query": "gardens", "k": 5, "include_text": False}
    ).json()["results"]
    answer = httpx.patch(url(server, "/d0"), json={"title": "New", "metadata": {"kind": None, "colour": "red"}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["title"] == "New" and answer.json()["metadata"] == {"n": 0, "colour": "red"}
    assert httpx.get(url(server, "/d0")).json()["metadata"] == {"n": 0, "colour": "red"}
    # The next search's filter sees the patch, and the hit shows it; the score did not move (same vector).
    assert search_ids(server, {"filter": {"colour": "red"}}) == ["d0"]
    assert "d0" not in search_ids(server, {"filter": {"kind": "a"}})
    after = httpx.post(
        f"{server.url}/v1/libraries/notes/search", json={"query": "gardens", "k": 5, "include_text": False}
    ).json()["results"]
    old = next(h for h in before if h["document_id"] == "d0")
    new = next(h for h in after if h["document_id"] == "d0")
    assert new["score"] == old["score"] and new["title"] == "New" and new["metadata"] == {"n": 0, "colour": "red"}
    # Absent fields stay; a null title removes it; keyword search still finds the text.
    assert httpx.patch(url(server, "/d0"), json={"metadata": {"n": 7}}).json()["title"] == "New"
    assert httpx.patch(url(server, "/d0"), json={"title": None}).json()["title"] is None
    kw = httpx.post(f"{server.url}/v1/libraries/notes/search", json={"keywords": "number", "mode": "keyword"})
    assert "d0" in [h["document_id"] for h in kw.json()["results"]]


def test_patch_of_an_unknown_document_or_with_bad_values_is_a_4xx_and_changes_nothing(server, notes):
    assert httpx.patch(url(server, "/nope"), json={"title": "x"}).status_code == 404
    for body in ({"metadata": {"x": {"nested": 1}}}, {"metadata": {"$op": 1}}, {"text": "no"}, {"title": 3}):
        answer = httpx.patch(url(server, "/d1"), json=body)
        assert answer.status_code in (400, 422), (body, answer.text)
        assert answer.json()["error"]["message"]
    assert httpx.get(url(server, "/d1")).json()["metadata"] == {"n": 1, "kind": "b"}


def test_delete_by_ids_and_by_filter_counts_and_is_durable(server, notes, start_server):
    answer = httpx.post(url(server, "/delete"), json={"ids": ["d0", "d1", "missing"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": 2}
    assert httpx.post(url(server, "/delete"), json={"filter": {"kind": "a"}}).json() == {"deleted": 2}
    assert search_ids(server, {}) == ["d3"]
    kw = httpx.post(f"{server.url}/v1/libraries/notes/search", json={"keywords": "gardens", "mode": "keyword"})
    assert [h["document_id"] for h in kw.json()["results"]] == ["d3"]
    assert httpx.post(url(server, "/delete"), json={"filter": {"kind": "zzz"}}).json() == {"deleted": 0}
    data_dir = server.settings.data_dir
    server.stop()
    again = start_server(data_dir)
    listed = httpx.get(f"{again.url}/v1/libraries/notes/documents").json()["documents"]
    assert [doc["id"] for doc in listed] == ["d3"]


@pytest.mark.parametrize(
    "body",
    [
        {"ids": ["d0"], "filter": {"kind": "a"}},
        {},
        {"ids": []},
        {"ids": ["bad id!"]},
        {"filter": {}},
        {"filter": {"n": {"$regex": "x"}}},
        {"ids": "d0"},
    ],
)
def test_bad_deletes_are_4xx_and_delete_nothing(server, notes, body):
    answer = httpx.post(url(server, "/delete"), json=body)
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["error"]["type"]
    assert len(httpx.get(url(server)).json()["documents"]) == len(DOCS)


def test_the_python_client_patches_and_deletes(server, notes):
    patched = notes.patch_document("notes", "d1", title="New", metadata={"kind": None, "extra": "x"})
    assert patched["title"] == "New" and patched["metadata"] == {"n": 1, "extra": "x"}
    assert notes.delete_documents("notes", ids=["d0", "d2", "missing"]) == 2
    assert notes.delete_documents("notes", filter={"kind": "b"}) == 1  # d3 (d1 has no kind now)
    assert sorted(doc["id"] for doc in notes.list_documents("notes")["documents"]) == ["d1", "d4"]
    with pytest.raises(ValueError, match="exactly one"):
        notes.delete_documents("notes")
