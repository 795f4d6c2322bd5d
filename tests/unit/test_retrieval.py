"""Fusion, thresholds, offsets and groups (arrwdb.library.retrieval), the keyword index's queries
(arrwdb.store.keywords) on a real in-memory SQLite, and the retrieval options over the engine protocol."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrwdb.errors import InvalidInput
from arrwdb.ipc import wire
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import Hit, Retrieval, SearchInput
from arrwdb.library.library import RowEntry
from arrwdb.library.retrieval import (
    check_retrieval,
    finish,
    finish_rows,
    fuse,
    fuse_rows,
    leg_size,
    page_k,
    render,
)
from arrwdb.library.row_hits import RowHits, rows_json
from arrwdb.store import keywords as keyword_store


def hit(doc: str, score: float, chunk: int = 0, **metadata: object) -> Hit:
    return Hit(doc, chunk, score, None, None, dict(metadata))


def test_rrf_sums_weighted_reciprocal_ranks():
    vector = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    keyword = [hit("c", 12.0), hit("d", 3.0)]
    fused = fuse(vector, keyword, Retrieval(mode="hybrid"))
    scores = {h.document_id: h.score for h in fused}
    assert scores == pytest.approx({"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62})
    assert [h.document_id for h in fused] == ["c", "a", "b", "d"]  # b and d tie: the vector leg's first
    weighted = fuse(vector, keyword, Retrieval(mode="hybrid", fusion_k=1, weights=(2.0, 0.5)))
    assert {h.document_id: h.score for h in weighted}["c"] == pytest.approx(2 / 4 + 0.5 / 2)


def test_dbsf_normalises_each_leg_by_mean_and_three_sigma():
    vector = [hit("a", 1.0), hit("b", 0.0)]  # mean 0.5, sigma 0.5: window [-1, 2]
    keyword = [hit("b", 7.0)]  # one score: 0.5
    fused = {h.document_id: h.score for h in fuse(vector, keyword, Retrieval(mode="hybrid", fusion="dbsf"))}
    assert fused == pytest.approx({"a": 2 / 3, "b": 1 / 3 + 0.5})


def test_same_chunk_of_a_document_is_one_hit_other_chunks_are_not():
    fused = fuse([hit("a", 0.5, chunk=0)], [hit("a", 2.0, chunk=1), hit("a", 1.0, chunk=0)], Retrieval("hybrid"))
    assert sorted((h.document_id, h.chunk_index) for h in fused) == [("a", 0), ("a", 1)]


def test_threshold_then_offset_then_k():
    ranked = [hit(str(i), 1.0 - i / 10) for i in range(10)]
    options = Retrieval(score_threshold=0.45, offset=2)
    assert [h.document_id for h in finish(ranked, options, 2)] == ["2", "3"]
    assert [h.document_id for h in finish(ranked, options, 10)] == ["2", "3", "4", "5"]


def test_groups_by_document_or_metadata_with_lists_and_distinct_types():
    ranked = [
        hit("a", 0.9, tag=["x", "y"]),
        hit("b", 0.8, tag="x"),
        hit("c", 0.7, tag=1),
        hit("d", 0.6, tag=True),
        hit("e", 0.5),
        hit("a", 0.4, chunk=1, tag=["x", "y"]),
    ]
    groups = finish(ranked, Retrieval(group_by="tag", group_size=2), 4)
    assert [(g["key"], [h.document_id for h in g["hits"]]) for g in groups] == [
        ("x", ["a", "b"]),
        ("y", ["a", "a"]),
        (1, ["c"]),
        (True, ["d"]),
    ]
    by_doc = finish(ranked, Retrieval(group_by="document_id", group_size=3, offset=1), 2)
    assert [(g["key"], len(g["hits"])) for g in by_doc] == [("b", 1), ("c", 1)]


def test_leg_sizes():
    assert leg_size(Retrieval(mode="hybrid"), 10) == 50
    assert leg_size(Retrieval(mode="hybrid"), 20) == 80
    assert leg_size(Retrieval(mode="hybrid", offset=5), 300) == 1000
    assert leg_size(Retrieval(mode="keyword", offset=3), 10) == 13
    assert leg_size(Retrieval(mode="hybrid", candidates=20), 10) == 20
    assert leg_size(Retrieval(group_by="t", group_size=3), 10) == 120


@pytest.mark.parametrize(
    ("options", "k", "has_query", "has_embedding", "field"),
    [
        (Retrieval(mode="nope"), 10, True, False, "mode"),
        (Retrieval(mode="hybrid", fusion="borda"), 10, True, False, "fusion.method"),
        (Retrieval(mode="hybrid", fusion_k=0), 10, True, False, "fusion.k"),
        (Retrieval(mode="hybrid", weights=(float("nan"), 1.0)), 10, True, False, "fusion.weights"),
        (Retrieval(mode="hybrid", weights=(-1.0, 1.0)), 10, True, False, "fusion.weights"),
        (Retrieval(offset=1000), 1, True, False, "offset"),
        (Retrieval(offset=-1), 10, True, False, "offset"),
        (Retrieval(mode="hybrid", candidates=0), 10, True, False, "candidates"),
        (Retrieval(mode="hybrid", candidates=1001), 10, True, False, "candidates"),
        (Retrieval(score_threshold=float("inf")), 10, True, False, "score_threshold"),
        (Retrieval(group_by=""), 10, True, False, "group_by"),
        (Retrieval(group_by="t", group_size=0), 10, True, False, "group_size"),
        (Retrieval(group_size=2), 10, True, False, "group_size"),
        (Retrieval(mode="keyword"), 10, False, True, "mode"),
        (Retrieval(mode="hybrid"), 10, False, True, "keywords"),
        (Retrieval(keywords="x"), 10, True, False, "keywords"),
        (Retrieval(mode="keyword", keywords=" ".join(f"w{i}" for i in range(300))), 10, False, False, "keywords"),
    ],
)
def test_bad_options_name_their_field(options, k, has_query, has_embedding, field):
    with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
        check_retrieval(options, k, has_query, has_embedding, "queries[2]")


def test_a_page_ends_at_rank_1000():
    """k + offset beyond 1000 is a shorter page; candidates below k + offset count as k + offset."""
    assert page_k(None, 1000) == 1000
    assert page_k(Retrieval(offset=995), 10) == 5
    assert page_k(Retrieval(offset=10), 10) == 10
    check_retrieval(Retrieval(offset=995, mode="hybrid", candidates=3), 10, True, False, "")  # accepted
    assert leg_size(Retrieval(mode="hybrid", candidates=3), 10) == 10


def test_good_options_pass():
    check_retrieval(Retrieval(mode="keyword", keywords="x"), 10, False, False, "")
    check_retrieval(Retrieval(mode="hybrid", keywords="x"), 10, False, True, "")
    check_retrieval(Retrieval(mode="hybrid", fusion="dbsf", weights=(0.0, 1.0), candidates=10), 10, True, False, "")


@pytest.fixture
def fts():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE documents (library_id, id, text)")
    conn.execute('CREATE TABLE chunks (row_id, library_id, doc_id, start, "end")')
    keyword_store.create_table(conn, "lib")
    return conn


def test_match_expression_quotes_every_word():
    words = keyword_store.query_words('Cats AND "dogs" cats NEAR(x)')
    assert keyword_store.match_expression(words) == '"cats" OR "and" OR "dogs" OR "near" OR "x"'
    assert keyword_store.match_expression(['a"b']) == '"a""b"'
    assert keyword_store.query_words("?! --") == ()


def test_search_ranks_by_bm25_and_filters_by_allowed_rows_in_pages(fts):
    rows = [(i, "common word" + (" rare" if i % 7 == 0 else "")) for i in range(1, 1001)]
    keyword_store.insert_rows(fts, "lib", rows)
    best = keyword_store.search(fts, "lib", ("rare", "common"), 5, None)
    assert all(row % 7 == 0 for row, _ in best) and [s for _, s in best] == sorted((s for _, s in best), reverse=True)
    allowed = np.arange(900, 1001, dtype=np.int64)  # beyond the first page of ranked matches
    found = keyword_store.search(fts, "lib", ("common",), 500, allowed)
    assert sorted(row for row, _ in found) == list(range(900, 1001))
    assert keyword_store.search(fts, "lib", ("common",), 5, np.array([], dtype=np.int64)) == []
    keyword_store.delete_rows(fts, "lib", [7, 14])
    assert 7 not in [row for row, _ in keyword_store.search(fts, "lib", ("rare",), 1000, None)]
    assert keyword_store.size(fts, "lib")["rows"] == 998


def test_rebuild_indexes_every_chunk_text(fts):
    fts.execute("INSERT INTO documents VALUES ('lib', 'a', 'alpha beta gamma'), ('lib', 'b', NULL)")
    fts.execute("INSERT INTO chunks VALUES (1, 'lib', 'a', 0, 10), (2, 'lib', 'a', 11, 16), (3, 'lib', 'b', 0, 0)")
    keyword_store.drop_table(fts, "lib")
    assert not keyword_store.table_exists(fts, "lib")
    assert keyword_store.rebuild(fts, "lib") == 2
    assert keyword_store.search(fts, "lib", ("gamma",), 5, None)[0][0] == 2


def test_retrieval_options_cross_the_engine_protocol():
    options = Retrieval("hybrid", "some words", "dbsf", 7, (0.25, 2.0), 70, 0.5, 3, "topic", 4)
    query = SearchInput(query="q", embedding=None, k=5, retrieval=options)
    described, frames = wire.queries_out([query, SearchInput(query="plain", embedding=None)])
    back = wire.queries_in(wire.unpack(wire.pack({"q": described}))["q"], frames)
    assert back[0].retrieval == options and back[1].retrieval is None


def test_words_in_half_the_rows_or_more_are_left_out_of_the_match(fts):
    keyword_store.insert_rows(fts, "lib", [(i, "the fox" if i < 3 else "the hen") for i in range(1, 11)])
    assert keyword_store.indexed_rows(fts, "lib") == 10
    assert keyword_store.useful_words(fts, "lib", ["the", "fox", "hen"]) == ["fox"]  # hen: 8 of 10, the: all
    assert keyword_store.useful_words(fts, "lib", ["the", "hen"]) == ["the", "hen"]  # none useful: all kept
    hits = keyword_store.search(fts, "lib", ("the", "fox"), 10, None)
    assert sorted(row for row, _ in hits) == [1, 2]  # "the" alone no longer matches every row


_FUZZ = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
keyword_store.create_table(_FUZZ, "fuzz")
keyword_store.insert_rows(_FUZZ, "fuzz", [(1, "alpha beta"), (2, 'NEAR "quoted" text*'), (3, "é ß 漢字 😀")])


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.sampled_from(['"', "*", "NEAR(", "^", ":", "-"])
)
def test_no_text_is_fts5_syntax(text):
    """Any string is a valid keyword query (FTS5 raises on a syntax error; nothing may)."""
    words = keyword_store.query_words(text)
    hits = keyword_store.search(_FUZZ, "fuzz", words, 5, None)
    assert all(row in (1, 2, 3) for row, _ in hits)
    filtered = keyword_store.search(_FUZZ, "fuzz", words, 5, np.array([2], dtype=np.int64))
    assert all(row == 2 for row, _ in filtered)


def _row_legs(seed: int) -> tuple[RowHits, RowHits]:
    """Two legs of one library version over 40 rows (chunks 0-1 of 20 documents), overlapping, with
    repeated scores (ties in both fusions)."""
    rng = random.Random(seed)
    entries = {row: RowEntry(f"d{row // 2}", row % 2, f"t{row}" if row % 3 else None, {"n": row}) for row in range(40)}

    def leg() -> RowHits:
        rows = rng.sample(range(40), rng.randint(0, 25))
        scores = sorted((rng.choice((0.5, 1.0, 1.5, rng.random())) for _ in rows), reverse=True)
        return RowHits(rows, [entries[row] for row in rows], scores, 3)

    return leg(), leg()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    fusion=st.sampled_from(["rrf", "dbsf"]),
    weights=st.sampled_from([(1.0, 1.0), (1.0, 3.0), (0.0, 1.0), (2.5, 0.5)]),
    fusion_k=st.sampled_from([1, 60]),
    threshold=st.sampled_from([None, 0.02, 0.9]),
    offset=st.integers(0, 5),
    k=st.integers(1, 12),
)
def test_legs_as_rows_fuse_finish_and_render_as_hit_objects_do(seed, fusion, weights, fusion_k, threshold, offset, k):
    vector, keyword = _row_legs(seed)
    options = Retrieval(
        mode="hybrid", fusion=fusion, weights=weights, fusion_k=fusion_k, score_threshold=threshold, offset=offset
    )
    fused = fuse_rows(vector, keyword, options)
    assert fused.hits() == fuse(vector.hits(), keyword.hits(), options)  # same hits, scores, order
    page = finish_rows(fused, options, k)
    expected = finish(fused.hits(), options, k)
    assert page.hits() == expected
    rendered, _ = rows_json(page.entries, page.scores)
    assert rendered.data == HitsJSON.of(expected).data
    assert rendered.data == render(expected).data


def test_legs_read_at_different_versions_are_fused_by_chunk_not_by_row():
    """A write between the legs can give a chunk a new row id (an upsert): the legs are then fused as
    Hit objects, by (document id, chunk index), as if no row id existed."""
    from arrwdb.engine.hybrid_job import fuse_legs

    old, new, other = RowEntry("a", 0, None, {}), RowEntry("a", 0, None, {}), RowEntry("b", 0, None, {})
    vector = RowHits([1, 2], [old, other], [0.9, 0.8], version=4)
    keyword = RowHits([7], [new], [3.0], version=5)  # document "a" rewritten: chunk 0 is row 7 now
    options = Retrieval(mode="hybrid")
    fused = fuse_legs(vector, keyword, options)
    assert isinstance(fused, list)
    assert [(hit.document_id, hit.score) for hit in fused] == [("a", 1 / 61 + 1 / 61), ("b", 1 / 62)]
    same_version = fuse_legs(vector, RowHits([1], [old], [3.0], version=4), options)
    assert isinstance(same_version, RowHits) and same_version.hits() == fused


def test_a_hybrid_batch_runs_both_legs_in_one_job_and_a_failed_leg_fails_only_its_query():
    """arrwdb.engine.hybrid_job: the vector legs of a batch in one search batch, the keyword legs in
    one keyword batch, fused on the finishing thread; a leg's error is its query's answer."""
    from arrwdb.engine.hybrid_job import HybridItem, fused_hits, run_hybrid
    from arrwdb.engine.search_batch import ReadyAnswers, SearchItem
    from arrwdb.errors import NotFound

    entry_a, entry_b = RowEntry("a", 0, None, {}), RowEntry("b", 0, None, {})
    options = Retrieval(mode="hybrid")
    query = SearchInput(query=None, embedding=[0.0, 1.0], k=10, rows=True)
    items = [
        HybridItem(SearchItem("lib", np.zeros((1, 2), np.float32), query), None, options)  # type: ignore[arg-type]
        for _ in range(3)
    ]
    calls: list[tuple[str, int]] = []

    def run_vector(vector_items):
        calls.append(("vector", len(vector_items)))
        hits = [[RowHits([1, 2], [entry_a, entry_b], [0.9, 0.8], version=3)], NotFound("gone"), [[]]]
        return ReadyAnswers(hits, [False] * len(vector_items))

    def run_keyword(keyword_items):
        calls.append(("keyword", len(keyword_items)))
        return [RowHits([2], [entry_b], [5.0], version=3), RowHits([], [], [], version=3), ValueError("bad")]

    fused = fused_hits(run_hybrid(items, run_vector, run_keyword))
    assert calls == [("vector", 3), ("keyword", 3)]
    assert isinstance(fused[0], RowHits)
    assert fused[0].rows == [2, 1] and fused[0].scores == pytest.approx([1 / 62 + 1 / 61, 1 / 61])
    assert isinstance(fused[1], NotFound) and isinstance(fused[2], ValueError)
