"""Keyword search from cached per-word BM25 scores (arrwdb.store.keyword_scores) against one FTS5 query over
the OR of the words (arrwdb.store.keywords.search), on real SQLite files."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrwdb.store import keyword_scores
from arrwdb.store import keywords as keyword_store
from arrwdb.store.keyword_scores import TermScoreCache

VOCABULARY = ["lord", "spake", "moses", "saying", "camel", "river", "gold", "land", "him", "that", "and", "the"]


def _text(rng: random.Random) -> str:
    # "the" and "and" in every row, "that" in most: the frequent words a long query holds.
    words = ["the", "and"] + (["that"] if rng.random() < 0.7 else [])
    words += [rng.choice(VOCABULARY[:9]) for _ in range(rng.randint(1, 12))]
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture
def store(tmp_path):
    """A writer and a reader connection on one SQLite file with a 300-row keyword index."""
    path = tmp_path / "kw.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    keyword_store.create_table(writer, "lib")
    rng = random.Random(7)
    keyword_store.insert_rows(writer, "lib", [(i, _text(rng)) for i in range(1, 301)])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.row_factory = sqlite3.Row  # as the store's connections: the cache must not depend on it
    yield writer, reader
    writer.close()
    reader.close()


def _queries() -> list[tuple[str, ...]]:
    rng = random.Random(3)
    return [tuple(dict.fromkeys(rng.choice(VOCABULARY) for _ in range(rng.randint(1, 8)))) for _ in range(60)]


def _same(found: list[tuple[int, float]], expected: list[tuple[int, float]], every: list[tuple[int, float]]) -> None:
    """The scores of ``expected``, best first, each on a row that has it in ``every`` (the full
    ranking: rows of equal score may come in any order, and any of them may be cut at the limit)."""
    assert [score for _, score in found] == pytest.approx([score for _, score in expected], rel=1e-12)
    true = dict(every)
    assert len({row for row, _ in found}) == len(found)
    for row, score in found:
        assert true[row] == pytest.approx(score, rel=1e-12)


def test_cached_scores_give_the_rows_and_scores_of_one_fts5_query(store):
    _, reader = store
    cache = TermScoreCache()
    allowed = np.arange(2, 301, 3, dtype=np.int64)
    for _ in range(2):  # cold, then from the cache
        for words in _queries():
            for limit in (1, 10, 300):
                every = keyword_store.search(reader, "lib", words, 1000, None)
                expected = keyword_store.search(reader, "lib", words, limit, None)
                _same(keyword_scores.search(reader, cache, "lib", words, limit, None), expected, every)
                filtered = keyword_store.search(reader, "lib", words, limit, allowed)
                found = keyword_scores.search(reader, cache, "lib", words, limit, allowed)
                _same(found, filtered, every)
                assert set(row for row, _ in found) <= set(allowed.tolist())
        assert len(cache) > 0
    assert not reader.in_transaction


def test_a_commit_by_another_connection_drops_every_entry(store):
    writer, reader = store
    cache = TermScoreCache()
    words = ("zebra", "camel")
    before = keyword_scores.search(reader, cache, "lib", words, 5, None)
    assert len(cache) == 2 and 1000 not in [row for row, _ in before]  # "zebra": no row yet
    keyword_store.insert_rows(writer, "lib", [(1000, "zebra camel")])
    after = keyword_scores.search(reader, cache, "lib", words, 5, None)
    assert after[0][0] == 1000 and after != before
    _same(
        after,
        keyword_store.search(reader, "lib", words, 5, None),
        keyword_store.search(reader, "lib", words, 999, None),
    )
    keyword_store.delete_rows(writer, "lib", [1000])
    again = keyword_scores.search(reader, cache, "lib", words, 5, None)
    assert 1000 not in [row for row, _ in again]
    _same(
        again,
        keyword_store.search(reader, "lib", words, 5, None),
        keyword_store.search(reader, "lib", words, 999, None),
    )


def test_a_search_fetches_a_bounded_share_and_answers_from_fts5_meanwhile(store):
    _, reader = store
    cache = TermScoreCache(min_fill_rows=1)  # the share alone: an eighth of the rows the words match
    words = ("lord", "moses", "gold", "land", "him", "camel", "river")
    expected = keyword_store.search(reader, "lib", words, 10, None)
    every = keyword_store.search(reader, "lib", words, 1000, None)
    sizes = []
    for _ in range(12):
        _same(keyword_scores.search(reader, cache, "lib", words, 10, None), expected, every)
        sizes.append(len(cache))
    assert sizes[0] < len(words)  # the first search could not fetch every word
    assert sizes == sorted(sizes) and sizes[-1] == len(words)  # later ones fill the rest


def test_a_word_kept_by_frequency_alone_is_scored_when_a_search_needs_it(store):
    _, reader = store
    cache = TermScoreCache()
    keyword_scores.search(reader, cache, "lib", ("the", "camel"), 5, None)  # "the": every row, left out
    only_common = keyword_scores.search(reader, cache, "lib", ("the", "and"), 400, None)
    assert len(only_common) == 300  # every word that common: all kept, every row matches
    every = keyword_store.search(reader, "lib", ("the", "and"), 400, None)
    _same(only_common, every, every)


def test_the_cache_keeps_its_byte_bound():
    cache = TermScoreCache(max_bytes=4000)
    for n in range(20):
        ids = np.arange(20, dtype=np.int64)
        cache.put("lib", f"w{n}", keyword_scores.WordScores(20, ids, ids.astype(np.float64)))
    assert 0 < len(cache) < 20
    assert cache.get("lib", "w19") is not None and cache.get("lib", "w0") is None
    huge = np.arange(1000, dtype=np.int64)
    cache.put("lib", "huge", keyword_scores.WordScores(1000, huge, huge.astype(np.float64)))
    assert cache.get("lib", "huge") is None  # over a quarter of the bound: never kept


_FUZZ = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
keyword_store.create_table(_FUZZ, "fuzz")
keyword_store.insert_rows(_FUZZ, "fuzz", [(1, "alpha beta"), (2, 'NEAR "quoted" text*'), (3, "é ß 漢字 😀")])
_FUZZ_CACHE = TermScoreCache()


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.sampled_from(['"', "*", "NEAR(", "^", ":", "-"])
)
def test_no_text_is_fts5_syntax_through_the_cache(text):
    words = keyword_store.query_words(text)
    hits = keyword_scores.search(_FUZZ, _FUZZ_CACHE, "fuzz", words, 5, None)
    assert hits == keyword_store.search(_FUZZ, "fuzz", words, 5, None)
    filtered = keyword_scores.search(_FUZZ, _FUZZ_CACHE, "fuzz", words, 5, np.array([2], dtype=np.int64))
    assert all(row == 2 for row, _ in filtered)
    assert not _FUZZ.in_transaction


@pytest.mark.parametrize("spread", [1, 10**9])  # close row ids (bincount over the span), far ones (np.unique)
def test_scores_of_a_row_are_summed_over_its_words(spread):
    row_ids = np.array([5, 7, 5, 9, 7, 5], dtype=np.int64) * spread
    scores = np.array([1.0, 2.0, 0.5, 4.0, 0.25, 0.125])
    unique, totals = keyword_scores._summed(row_ids, scores)
    assert unique.tolist() == [5 * spread, 7 * spread, 9 * spread]
    assert totals.tolist() == [1.625, 2.25, 4.0]
