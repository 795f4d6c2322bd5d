"""Hits without text are answered from the library's memory, hits with text from SQLite: both give the
same document fields, through upserts, deletes and a restart (which loads the memory side anew)."""

from __future__ import annotations

from typing import Any

import numpy as np

QUERIES = ["subject 1 notes", "word7 word8 word9", "a retitled page", "metadata kept"]
PARAMS = {"k": 20, "include_text": False}


def _load(c: Any) -> None:
    c.create_library("hits")
    c.add_documents(
        "hits",
        [
            {"id": f"n{i}", "text": f"note {i} about subject {i % 3}", "metadata": {"i": i}}
            | ({"title": f"Note {i}"} if i % 2 else {})
            for i in range(12)
        ],
    )
    # Several chunks: hits of its later chunks carry chunk indexes above 0.
    c.add_document("hits", {"id": "long", "title": "Long", "text": " ".join(f"word{i}" for i in range(900))})
    c.add_document("hits", {"id": "n3", "title": "A retitled page", "text": "a retitled page", "metadata": {"i": 33}})
    c.add_document("hits", {"id": "n5", "text": "metadata kept, title dropped", "metadata": {"kept": True}})
    c.delete_document("hits", "n8")


def _both_ways(c: Any) -> list[list[dict[str, Any]]]:
    """Each query's hits without text (memory) after checking them against the hits with text (store)."""
    answers = []
    for query in QUERIES:
        plain = c.search("hits", query=query, **PARAMS)
        with_text = c.search("hits", query=query, k=20, include_text=True)
        assert all(hit["text"] for hit in with_text)
        assert plain == [{**hit, "text": None} for hit in with_text]
        answers.append(plain)
    return answers


def _without_score(hit: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in hit.items() if key != "score"}


def test_hits_from_memory_match_the_store_through_writes_and_a_restart(start_server, tmp_path):
    data = tmp_path / "store"
    first = start_server(data)
    with first.client() as c:
        _load(c)
        before = _both_ways(c)
    hits = [hit for answer in before for hit in answer]
    by_id = {hit["document_id"]: hit for hit in hits}
    assert "n8" not in by_id
    assert max(hit["chunk_index"] for hit in hits if hit["document_id"] == "long") > 0
    assert by_id["n3"]["title"] == "A retitled page" and by_id["n3"]["metadata"] == {"i": 33}
    assert by_id["n5"]["title"] is None and by_id["n5"]["metadata"] == {"kept": True}
    assert by_id["n1"]["title"] == "Note 1"
    first.stop()

    second = start_server(data)
    with second.client() as c:
        # A filtered search waits until the documents are in memory again.
        c.search("hits", query="note", k=3, filter={"i": {"$gte": 0}})
        after = _both_ways(c)
        # The same hits and fields; scores may differ in the last bits (vectors reloaded, another order).
        assert [[_without_score(h) for h in a] for a in after] == [[_without_score(h) for h in b] for b in before]
        for a, b in zip(after, before, strict=True):
            np.testing.assert_allclose([h["score"] for h in a], [h["score"] for h in b], rtol=1e-5, atol=1e-6)
        c.add_document("hits", {"id": "n1", "title": "Renamed", "text": "note 1 about subject 1", "metadata": {}})
        renamed = [h for h in c.search("hits", query="note 1 about subject 1", **PARAMS) if h["document_id"] == "n1"]
        assert renamed and renamed[0]["title"] == "Renamed" and renamed[0]["metadata"] == {}
        _both_ways(c)


def test_vector_only_hits_from_memory(client):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    client.create_library("vecs", dimension=8, metric="cosine")
    client.add_documents(
        "vecs", [{"id": f"v{i}", "embedding": v.tolist(), "metadata": {"i": i}} for i, v in enumerate(vectors)]
    )
    answer = client.search("vecs", embedding=vectors[4].tolist(), k=3, include_text=False)
    assert answer[0]["document_id"] == "v4" and answer[0]["metadata"] == {"i": 4} and answer[0]["chunk_index"] == 0
    assert answer == [{**hit, "text": None} for hit in client.search("vecs", embedding=vectors[4].tolist(), k=3)]


def _texts(c: Any, embedding: list[float]) -> dict[str, str | None]:
    """Every document's hit text (include_text), by id: memory answers when no hit has a text."""
    return {hit["document_id"]: hit["text"] for hit in c.search("mixed", embedding=embedding, k=50)}


def test_texts_of_a_mixed_library_through_writes_and_a_restart(start_server, tmp_path):
    """Documents with a text and documents of a vector alone in one library: a hit's text is its
    document's (None without one), whether or not the batch needs SQLite, as texts come and go."""
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(6, 384)).astype(np.float32)
    data = tmp_path / "store"
    first = start_server(data)
    with first.client() as c:
        c.create_library("mixed")
        c.add_documents(
            "mixed",
            [{"id": "t0", "text": "a page about rivers"}, {"id": "t1", "text": "a page about hills", "title": "Hills"}]
            + [{"id": f"v{i}", "embedding": vectors[i].tolist(), "metadata": {"i": i}} for i in range(4)]
            + [{"id": "both", "text": "its own vector and text", "embedding": vectors[4].tolist()}],
        )
        expected = {"t0": "a page about rivers", "t1": "a page about hills", "both": "its own vector and text"}
        expected |= {f"v{i}": None for i in range(4)}
        assert _texts(c, vectors[0].tolist()) == expected
        # A document loses its text, another gains one; a text-less one is deleted.
        c.add_document("mixed", {"id": "t0", "embedding": vectors[5].tolist()})
        c.add_document("mixed", {"id": "v1", "text": "now with words"})
        c.delete_document("mixed", "v2")
        expected |= {"t0": None, "v1": "now with words"}
        del expected["v2"]
        assert _texts(c, vectors[3].tolist()) == expected
        # Hits of text-less documents only (memory): the vector's own document first, text None.
        alone = c.search("mixed", embedding=vectors[3].tolist(), k=1)
        assert alone[0]["document_id"] == "v3" and alone[0]["text"] is None and alone[0]["metadata"] == {"i": 3}
    first.stop()

    second = start_server(data)
    with second.client() as c:
        c.search("mixed", embedding=vectors[0].tolist(), k=1, filter={"i": {"$gte": 0}})  # documents in memory
        assert _texts(c, vectors[3].tolist()) == expected
        c.add_document("mixed", {"id": "v3", "text": "v3 speaks at last"})
        assert _texts(c, vectors[0].tolist()) == expected | {"v3": "v3 speaks at last"}
