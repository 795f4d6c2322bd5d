"""Keyword and hybrid search, thresholds, offsets and groups against a real server (real SQLite FTS5,
the packaged MiniLM): API.md, Additions (v1.1): Search."""

from __future__ import annotations

import httpx
import pytest

CORPUS = {
    "cat": ("The cat sleeps on the warm windowsill.", {"topic": "pets", "year": 2019}),
    "dog": ("A dog fetched the ball in the park.", {"topic": "pets", "year": 2021}),
    "stocks": ("Stock markets fell sharply after the announcement.", {"topic": "finance", "year": 2022}),
    "bonds": ("Bond yields rose as inflation expectations climbed.", {"topic": "finance", "year": 2020}),
    "rain": ("Heavy rain is expected across the region tomorrow.", {"topic": "weather", "year": 2021}),
    "zebra": ("Zebra crossings: the council repainted the stripes.", {"topic": "misc", "year": 2018}),
}


@pytest.fixture
def news(client):
    client.create_library("news")
    client.add_documents(
        "news", [{"id": k, "title": k.upper(), "text": t, "metadata": m} for k, (t, m) in CORPUS.items()]
    )
    return client


def search(server, body, library="news"):
    return httpx.post(f"{server.url}/v1/libraries/{library}/search", json=body)


def ids(hits):
    return [hit["document_id"] for hit in hits]


def test_keyword_mode_ranks_by_bm25_and_matches_any_term(server, news):
    answer = search(server, {"query": "zebra stripes", "mode": "keyword"})
    assert answer.status_code == 200, answer.text
    hits = answer.json()["results"]
    assert ids(hits) == ["zebra"]  # only one chunk holds either word
    assert hits[0]["text"] == CORPUS["zebra"][0] and hits[0]["score"] > 0
    # Any term matches (Elasticsearch's match): two documents, each holding one of the words.
    hits = search(server, {"keywords": "dog inflation", "mode": "keyword", "k": 5}).json()["results"]
    assert set(ids(hits)) == {"dog", "bonds"}
    # Porter stemming: "sleeping" finds "sleeps".
    assert ids(search(server, {"keywords": "sleeping", "mode": "keyword"}).json()["results"]) == ["cat"]


def test_hybrid_fuses_both_legs_with_rrf_and_dbsf(server, news):
    # The vector leg ranks every document; the keyword leg only "zebra": fused, it comes first.
    vector = search(server, {"query": "zebra", "k": 6}).json()["results"]
    rrf = search(server, {"query": "zebra", "mode": "hybrid", "k": 6}).json()["results"]
    assert ids(rrf)[0] == "zebra" and sorted(ids(rrf)) == sorted(ids(vector))
    top = rrf[0]["score"]
    vector_rank = ids(vector).index("zebra") + 1
    assert top == pytest.approx(1 / (60 + vector_rank) + 1 / 61)
    dbsf = search(server, {"query": "zebra", "mode": "hybrid", "k": 6, "fusion": {"method": "dbsf"}}).json()
    assert ids(dbsf["results"])[0] == "zebra" and 0 < dbsf["results"][0]["score"] <= 2
    # Weights: the keyword leg weighed 0 leaves the vector ranking.
    only_vector = search(
        server, {"query": "zebra", "mode": "hybrid", "k": 6, "fusion": {"method": "rrf", "weights": [1, 0]}}
    ).json()["results"]
    assert ids(only_vector) == ids(vector)


def test_filters_apply_to_both_legs(server, news):
    body = {"keywords": "the", "mode": "keyword", "k": 10, "filter": {"topic": "pets"}}
    hits = search(server, body).json()["results"]
    assert set(ids(hits)) == {"cat", "dog"}  # "the" is in four documents, two of them pets
    hybrid = search(server, {"query": "the zebra", "mode": "hybrid", "k": 10, "filter": {"year": {"$gte": 2021}}})
    assert set(ids(hybrid.json()["results"])) == {"dog", "stocks", "rain"}
    none = search(server, {"keywords": "zebra", "mode": "keyword", "filter": {"topic": "pets"}}).json()
    assert none["results"] == []


def test_threshold_offset_and_groups(server, news, client):
    everything = search(server, {"query": "animals", "k": 6}).json()["results"]
    page = search(server, {"query": "animals", "k": 2, "offset": 2}).json()["results"]
    assert page == everything[2:4]
    cut = everything[2]["score"]
    above = search(server, {"query": "animals", "k": 6, "score_threshold": cut}).json()["results"]
    assert above == everything[:3]
    groups = search(server, {"query": "animals", "k": 2, "group_by": "topic", "group_size": 2}).json()
    topics = list(dict.fromkeys(hit["metadata"]["topic"] for hit in everything))
    assert [g["key"] for g in groups["groups"]] == topics[:2]
    for group in groups["groups"]:  # each group: its best hits, in the ranking's order, up to 2
        members = [hit for hit in everything if hit["metadata"]["topic"] == group["key"]][:2]
        assert group["hits"] == members
    by_doc = search(server, {"query": "animals", "k": 3, "group_by": "document_id"}).json()["groups"]
    assert [g["key"] for g in by_doc] == ids(everything[:3])


def test_batch_mixes_modes_and_the_cache_keeps_them_apart(server, news):
    queries = [
        {"query": "zebra", "k": 2},
        {"query": "zebra", "k": 2, "mode": "keyword"},
        {"query": "zebra", "k": 2, "mode": "hybrid"},
        {"query": "zebra", "k": 2, "group_by": "topic"},
    ]
    answers = []
    for _ in range(2):  # the second time from the result cache
        hits_before = _cache_hits(server)
        answer = httpx.post(f"{server.url}/v1/libraries/news/search/batch", json={"queries": queries})
        answers.append(answer.json()["results"])
        assert answer.status_code == 200, answer.text
        plain, keyword, hybrid, grouped = answer.json()["results"]
        assert len(plain) == 2 and ids(keyword) == ["zebra"] and ids(hybrid)[0] == "zebra"
        assert grouped[0]["key"] == "misc" and "hits" in grouped[0]
        assert plain[0]["score"] != hybrid[0]["score"]
    assert _cache_hits(server) - hits_before == len(queries)  # the second pass: every query from the cache
    assert answers[0] == answers[1]


def _cache_hits(server):
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("arrwdb_result_cache_hits_total")
    )


def test_read_your_writes_and_deletes_in_the_keyword_index(server, news, client):
    client.add_documents("news", [{"id": "new", "text": "Quokkas smile at tourists."}])
    assert ids(search(server, {"keywords": "quokkas", "mode": "keyword"}).json()["results"]) == ["new"]
    client.add_documents("news", [{"id": "new", "text": "Wombats dig burrows."}])  # an upsert replaces
    assert search(server, {"keywords": "quokkas", "mode": "keyword"}).json()["results"] == []
    assert ids(search(server, {"keywords": "wombats", "mode": "keyword"}).json()["results"]) == ["new"]
    assert httpx.delete(f"{server.url}/v1/libraries/news/documents/new").status_code == 204
    assert search(server, {"keywords": "wombats", "mode": "keyword"}).json()["results"] == []


def test_keyword_index_survives_a_restart_and_is_rebuilt_when_missing(start_server, tmp_path):
    import sqlite3

    data = tmp_path / "kw"
    server = start_server(data)
    with server.client() as client:
        library = client.create_library("lib")
        client.add_documents("lib", [{"id": "a", "text": "Pelicans scoop fish."}, {"id": "b", "text": "Owls hoot."}])
    server.stop()
    server = start_server(data)
    assert ids(search(server, {"keywords": "pelicans", "mode": "keyword"}, "lib").json()["results"]) == ["a"]
    server.stop()
    conn = sqlite3.connect(data / "arrwdb.sqlite3")
    conn.execute(f'DROP TABLE "kw_{library["id"]}"')
    conn.commit()
    conn.close()
    server = start_server(data)
    assert ids(search(server, {"keywords": "owls", "mode": "keyword"}, "lib").json()["results"]) == ["b"]
    stats = httpx.get(f"{server.url}/v1/libraries/lib/statistics").json()
    assert stats["keyword_index"]["state"] == "ready" and stats["keyword_index"]["rows"] == 2


def test_keyword_text_of_any_content_is_never_a_5xx(server, news):
    hostile = [
        '"',
        '""',
        "AND",
        "OR NOT",
        "NEAR(a b, 2)",
        "col:x",
        "x*",
        "^start",
        "\x00",
        "(",
        ")",
        "*",
        "-",
        'a"b',
        "{x y}",
        "é\u0301",
        "😀",
        "漢字",
        "a" * 5000,
        "' OR 1=1 --",
        "\\",
        "+",
        ":",
    ]
    for text in hostile:
        answer = search(server, {"keywords": text, "mode": "keyword"})
        assert answer.status_code == 200, (text, answer.text)
        hybrid = search(server, {"query": text, "mode": "hybrid"})
        assert hybrid.status_code in (200, 422), (text, hybrid.text)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "mode": "hybrid", "fusion": {"method": "borda"}}, "fusion"),
        ({"query": "x", "offset": 1000}, "offset"),
        ({"query": "x", "group_by": "colour"}, "group_by"),
        ({"query": "x", "keywords": "y"}, "keywords"),
        ({"query": "x", "mode": "hybrid", "candidates": 0}, "candidates"),
        ({"query": "x", "mode": "hybrid", "fusion": {"weights": [1]}}, "weights"),
        ({"query": "x", "mode": "hybrid", "fusion": {"weights": [0, 0]}}, "weights"),
        ({"query": "x", "group_size": 2}, "group_size"),
        ({"embedding": [0.1] * 384, "mode": "keyword"}, "mode"),
        ({"mode": "keyword", "keywords": "  "}, "keywords"),
    ],
)
def test_bad_retrieval_options_are_clear_4xx(server, news, body, field):
    answer = search(server, body)
    assert answer.status_code in (400, 422), answer.text
    error = answer.json()["error"]
    assert error["type"] and field in error["message"]


@pytest.mark.parametrize(
    "options",
    [
        {"mode": "keyword"},
        {"mode": "hybrid"},
        {"mode": "hybrid", "fusion": {"method": "dbsf", "weights": [1.0, 2.5]}},
        {"mode": "hybrid", "score_threshold": 0.015, "offset": 1},
        {"mode": "hybrid", "group_by": "topic", "group_size": 2},
    ],
)
def test_hits_without_text_are_those_with_text_less_the_text(server, news, options):
    """Without text, the legs' hits come from the library's memory (rows fused by row id, the JSON
    from each row's kept pieces); with text, from the store as Hit objects: the same answers."""
    field = "groups" if "group_by" in options else "results"
    for query in ("zebra stripes", "the dog and the rain", "markets yields inflation"):
        body = {"query": query, "k": 5, **options}
        with_text = search(server, body).json()[field]
        without = search(server, {**body, "include_text": False}).json()[field]
        if "group_by" in options:
            with_text = [{**group, "hits": [{**h, "text": None} for h in group["hits"]]} for group in with_text]
        else:
            with_text = [{**hit, "text": None} for hit in with_text]
        assert without == with_text and without
