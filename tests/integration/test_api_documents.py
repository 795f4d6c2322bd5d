"""Every /documents row of API.md, and the bad inputs that must change nothing."""

from __future__ import annotations

import base64
import math

import httpx
import numpy as np
import pytest

from arrwdb.client.client import ApiError


@pytest.fixture
def lib(client):
    return client.create_library("docs")


@pytest.fixture
def vec_lib(client):
    return client.create_library("vecs", dimension=4, metric="cosine")


def test_add_text_document_with_generated_id(client, lib):
    doc_id = client.add_document("docs", {"title": "T", "text": "Hello there.", "metadata": {"lang": "en"}})
    doc = client.get_document("docs", doc_id)
    assert doc == {"id": doc_id, "title": "T", "text": "Hello there.", "metadata": {"lang": "en"}}
    assert client.get_library("docs")["document_count"] == 1


def test_add_with_embedding_stores_the_vector(client, vec_lib):
    client.add_document("vecs", {"id": "v1", "embedding": [0.5, -1.25, 3.0, 1e-3], "text": "kept as is"})
    doc = client.get_document("vecs", "v1")
    assert doc["text"] == "kept as is"
    assert np.allclose(doc["embedding"], [0.5, -1.25, 3.0, 1e-3], rtol=1e-7)
    assert client.statistics("vecs")["vector_count"] == 1


def test_upsert_replaces(client, lib):
    client.add_document("docs", {"id": "a", "text": "first version about cats", "metadata": {"v": 1}})
    assert client.add_document("docs", {"id": "a", "text": "second version about finance", "metadata": {"v": 2}}) == "a"
    assert client.get_document("docs", "a")["metadata"] == {"v": 2}
    stats = client.statistics("docs")
    assert stats["document_count"] == 1
    assert stats["vector_count"] == 1
    hit = client.search("docs", query="cats", k=5)
    assert [h["text"] for h in hit] == ["second version about finance"]


def test_batch_in_input_order(client, lib):
    docs = [{"id": f"d{i}", "text": f"document number {i}"} for i in range(20)]
    docs.append({"text": "no id"})
    ids = client.add_documents("docs", docs)
    assert ids[:20] == [f"d{i}" for i in range(20)]
    assert len(ids) == 21 and ids[20]
    assert client.get_library("docs")["document_count"] == 21


def test_batch_is_all_or_nothing(client, lib):
    client.add_document("docs", {"id": "keep", "text": "already here"})
    bad = [{"id": "n1", "text": "fine"}, {"id": "n2", "text": ""}, {"id": "n3", "text": "fine too"}]
    with pytest.raises(ApiError) as err:
        client.add_documents("docs", bad)
    assert err.value.status == 422
    assert "documents[1]" in err.value.message
    assert [d["id"] for d in client.iter_documents("docs")] == ["keep"]


def test_batch_size_limits(server, client, lib):
    for documents in ([], [{"text": "x"}] * 1001):
        response = httpx.post(f"{server.url}/v1/libraries/docs/documents/batch", json={"documents": documents})
        assert response.status_code == 422
    assert client.get_library("docs")["document_count"] == 0


def test_long_text_is_chunked_with_offsets(client, lib):
    sentences = [f"Sentence {i} talks about topic {i % 7} in some detail." for i in range(200)]
    text = " ".join(sentences)
    client.add_document("docs", {"id": "long", "text": text})
    stats = client.statistics("docs")
    assert stats["document_count"] == 1
    assert stats["chunk_count"] >= 4
    hits = client.search("docs", query="Sentence 150 talks about topic 3", k=stats["chunk_count"])
    assert {h["chunk_index"] for h in hits} == set(range(stats["chunk_count"]))
    for hit in hits:
        assert hit["document_id"] == "long"
        assert hit["text"] in text  # chunk text is a slice of the original, not a re-decoding
    # Chunks together cover the whole text.
    covered = "".join(sorted((h["text"] for h in hits), key=text.index))
    assert (covered.startswith(sentences[0]) and text.endswith(hits[-1]["text"][-20:])) or len(covered) >= len(text)


def test_pagination_with_cursor(client, lib):
    ids = sorted(client.add_documents("docs", [{"id": f"doc-{i:03d}", "text": f"t{i}"} for i in range(25)]))
    seen, cursor, pages = [], None, 0
    while True:
        page = client.list_documents("docs", limit=10, cursor=cursor)
        seen += [d["id"] for d in page["documents"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=abc", "cursor=%%%", "cursor=AAAAA", "cursor=AA%3D%3D"]
)
def test_bad_listing_parameters(server, lib, query):
    response = httpx.get(f"{server.url}/v1/libraries/docs/documents?{query}")
    expected = 400 if query.startswith("cursor") else 422
    assert response.status_code == expected, response.text
    assert set(response.json()["error"]) == {"type", "message"}


def test_a_cursor_is_a_position_in_id_order(client, lib, server):
    """Any cursor of the schema's form is a position: listing resumes after the id it names."""
    for doc_id in ("a", "b", "c"):
        client.add_document("docs", {"id": doc_id, "text": f"document {doc_id}"})
    after_a = base64.urlsafe_b64encode(b"a").decode().rstrip("=")
    page = httpx.get(f"{server.url}/v1/libraries/docs/documents", params={"cursor": after_a}).json()
    assert [doc["id"] for doc in page["documents"]] == ["b", "c"]
    before_all = httpx.get(f"{server.url}/v1/libraries/docs/documents", params={"cursor": "AAAA"}).json()
    assert [doc["id"] for doc in before_all["documents"]] == ["a", "b", "c"]  # three NUL bytes sort first
    after_all = httpx.get(f"{server.url}/v1/libraries/docs/documents", params={"cursor": "_w"}).json()
    assert after_all == {"documents": [], "next_cursor": None}  # byte 0xff sorts after every id


@pytest.mark.parametrize("reserved", ["batch", "delete"])
def test_the_bulk_routes_names_are_no_document_ids(client, lib, server, reserved):
    """.../documents/batch and .../documents/delete are the bulk routes' paths alone."""
    url = f"{server.url}/v1/libraries/docs/documents"
    refused = httpx.post(url, json={"id": reserved, "text": "a document"})
    assert refused.status_code == 422 and reserved in refused.json()["error"]["message"]
    batch = httpx.post(f"{url}/batch", json={"documents": [{"id": "x", "text": "x"}, {"id": reserved, "text": "y"}]})
    assert batch.status_code == 422
    for method in ("GET", "PATCH", "DELETE", "OPTIONS"):
        answer = httpx.request(method, f"{url}/{reserved}", json={"metadata": {"k": 1}})
        assert answer.status_code == 405, (method, answer.text)
        assert answer.headers["allow"] == "POST"
        assert answer.json()["error"]["type"] == "method_not_allowed"
    assert [doc["id"] for doc in httpx.get(url).json()["documents"]] == []


def test_delete_document(client, lib):
    client.add_document("docs", {"id": "a", "text": "to delete"})
    client.add_document("docs", {"id": "b", "text": "to keep"})
    client.delete_document("docs", "a")
    with pytest.raises(ApiError) as err:
        client.get_document("docs", "a")
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        client.delete_document("docs", "a")
    assert err.value.status == 404
    hits = client.search("docs", query="to delete", k=10)
    assert [h["document_id"] for h in hits] == ["b"]


def test_text_needs_the_model_dimension(client, vec_lib):
    with pytest.raises(ApiError) as err:
        client.add_document("vecs", {"text": "only vectors here"})
    assert err.value.status == 422
    assert "dimension" in err.value.message


def _raw(server, path, body: bytes):
    return httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"})


BAD_DOCUMENTS = {
    "wrong dimension": b'{"embedding": [1, 2, 3]}',
    "NaN": b'{"embedding": [1, NaN, 3, 4]}',
    "infinity": b'{"embedding": [1, 1e999, 3, 4]}',
    "float32 overflow": b'{"embedding": [1, 1e39, 3, 4]}',
    "zero vector in cosine": b'{"embedding": [0, 0, 0, 0]}',
    "string numbers": b'{"embedding": ["1", "2", "3", "4"]}',
    "bools as numbers": b'{"embedding": [true, false, true, true]}',
    "empty text": b'{"text": ""}',
    "blank text": b'{"text": "   "}',
    "neither text nor embedding": b'{"title": "only a title"}',
    "300-character id": b'{"id": "' + b"x" * 300 + b'", "embedding": [1, 2, 3, 4]}',
    "id with a slash": b'{"id": "a/b", "embedding": [1, 2, 3, 4]}',
    "nested metadata": b'{"embedding": [1, 2, 3, 4], "metadata": {"a": {"b": 1}}}',
    "metadata list of numbers": b'{"embedding": [1, 2, 3, 4], "metadata": {"a": [1, 2]}}',
    "metadata null value": b'{"embedding": [1, 2, 3, 4], "metadata": {"a": null}}',
    "unknown field": b'{"embedding": [1, 2, 3, 4], "vector": [1]}',
    "non-object body": b"[1, 2, 3, 4]",
    "malformed JSON": b'{"embedding": [1, 2,',
    "base64 that is not base64": b'{"embedding_base64": "not*base64"}',
    "base64 of a partial float": b'{"embedding_base64": "' + base64.b64encode(b"\x00" * 6) + b'"}',
    "base64 of the wrong dimension": b'{"embedding_base64": "' + base64.b64encode(np.ones(3, "<f4").tobytes()) + b'"}',
    "base64 NaN": b'{"embedding_base64": "' + base64.b64encode(np.array([1, np.nan, 3, 4], "<f4").tobytes()) + b'"}',
    "base64 zero vector": b'{"embedding_base64": "' + base64.b64encode(np.zeros(4, "<f4").tobytes()) + b'"}',
    "base64 and a list": b'{"embedding": [1, 2, 3, 4], "embedding_base64": "'
    + base64.b64encode(np.ones(4, "<f4").tobytes())
    + b'"}',
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_bad_documents_change_nothing(server, client, vec_lib, name):
    client.add_document("vecs", {"id": "existing", "embedding": [1, 0, 0, 0]})
    before = list(client.iter_documents("vecs"))
    response = _raw(server, "/v1/libraries/vecs/documents", BAD_DOCUMENTS[name])
    assert response.status_code in (400, 422), (name, response.status_code, response.text)
    assert response.status_code == (400 if name == "malformed JSON" else 422)
    error = response.json()["error"]
    assert error["type"] and error["message"]
    batch = _raw(server, "/v1/libraries/vecs/documents/batch", b'{"documents": [' + BAD_DOCUMENTS[name] + b"]}")
    assert batch.status_code in (400, 422)
    assert list(client.iter_documents("vecs")) == before
    assert client.statistics("vecs")["vector_count"] == 1


def test_64_megabyte_body_is_413(server, client, vec_lib):
    body = b'{"text": "' + b"a" * (64 * 1024 * 1024) + b'"}'
    response = httpx.post(
        f"{server.url}/v1/libraries/vecs/documents", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit is enforced on the streamed bytes
        for _ in range(64):
            yield b"a" * (1024 * 1024)

    streamed = httpx.post(f"{server.url}/v1/libraries/vecs/documents", content=chunks())
    assert streamed.status_code == 413
    assert client.statistics("vecs")["document_count"] == 0


def test_floats_round_trip_as_float32(client, vec_lib):
    values = [math.pi, -math.e, 1e-30, 12345.678]
    client.add_document("vecs", {"id": "p", "embedding": values})
    stored = client.get_document("vecs", "p")["embedding"]
    # Vectors are stored as float32: what comes back parses to exactly the same float32 values.
    assert np.array_equal(np.asarray(stored, dtype=np.float32), np.asarray(values, dtype=np.float32))


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def test_embedding_base64_is_the_same_vector_as_a_list(client, vec_lib):
    values = [math.pi, -math.e, 1e-30, 12345.678]
    client.add_document("vecs", {"id": "listed", "embedding": values})
    client.add_documents("vecs", [{"id": "encoded", "embedding_base64": _b64(values), "text": "t"}])
    listed, encoded = client.get_document("vecs", "listed"), client.get_document("vecs", "encoded")
    assert encoded["embedding"] == listed["embedding"]
    hits = client.search("vecs", embedding=values, k=2)
    assert {h["document_id"] for h in hits} == {"listed", "encoded"}
    assert hits[0]["score"] == pytest.approx(hits[1]["score"], abs=1e-6)


def test_a_bad_vector_in_a_batch_is_named_and_changes_nothing(client, vec_lib):
    good = [{"id": f"g{i}", "embedding_base64": _b64([1, i, 0, 0])} for i in range(4)]
    for bad in ({"embedding": [1, 2, 1e39, 4]}, {"embedding_base64": _b64([0, 0, 0, 0])}):
        with pytest.raises(ApiError) as err:
            client.add_documents("vecs", [*good[:2], {"id": "bad", **bad}, *good[2:]])
        assert err.value.status == 422 and "documents[2].embedding" in err.value.message
    assert client.statistics("vecs")["document_count"] == 0
    assert client.add_documents("vecs", good) == ["g0", "g1", "g2", "g3"]
