"""The batched keyword ranking (arrwdb.library.keyword_rank, kernels/keyword_sum.py) against the
per-search numpy sums (arrwdb.store.keyword_scores.top), and the reads without a store transaction
while the writer's commit count stands still."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrwdb.library.keyword_rank import rank_many
from arrwdb.store import keyword_scores
from arrwdb.store import keywords as keyword_store
from arrwdb.store.keyword_scores import Summable, TermScoreCache, WordScores, top


def _word(rng: random.Random, base: int, span: int, quantum: float | None) -> WordScores:
    rows = np.asarray(sorted(rng.sample(range(base, base + span), rng.randint(0, span))), dtype=np.int64)
    if quantum is None:
        scores = np.asarray([rng.uniform(0.01, 9.0) for _ in rows], dtype=np.float64)
    else:  # few distinct values: many ties, at the cut too
        scores = np.asarray([quantum * rng.randint(1, 3) for _ in rows], dtype=np.float64)
    return WordScores(len(rows), rows, scores)


def _searches(seed: int, count: int, base: int, span: int, quantum: float | None) -> list[Summable]:
    rng = random.Random(seed)
    words = [_word(rng, base, span, quantum) for _ in range(12)]
    return [Summable(rng.sample(words, rng.randint(1, 6)), rng.choice((1, 3, 10, 50)), None) for _ in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    count=st.integers(1, 12),
    base=st.sampled_from([1, 5_000]),
    span=st.integers(60, 400),
    quantum=st.sampled_from([None, 0.5, 1.25]),
)
def test_a_batch_ranks_each_search_as_it_alone_would_bit_for_bit(seed, count, base, span, quantum):
    searches = _searches(seed, count, base, span, quantum)
    assert rank_many(searches) == [top(search) for search in searches]


def test_a_tie_at_the_cut_keeps_the_lowest_row_ids():
    rows = np.arange(1, 101, dtype=np.int64)
    flat = WordScores(100, rows, np.full(100, 2.0))
    bump = WordScores(3, np.asarray([7, 50, 90], dtype=np.int64), np.full(3, 1.0))
    search = Summable([flat, bump], 5, None)
    expected = [(7, 3.0), (50, 3.0), (90, 3.0), (1, 2.0), (2, 2.0)]
    assert top(search) == expected
    assert rank_many([search, search]) == [expected, expected]


def test_filtered_searches_and_zero_scores_are_ranked_one_by_one():
    rows = np.arange(1, 201, dtype=np.int64)
    allowed = np.arange(2, 201, 2, dtype=np.int64)
    filtered = Summable([WordScores(200, rows, np.linspace(0.1, 5.0, 200))], 10, allowed)
    zero = WordScores(200, rows, np.linspace(0.0, 5.0, 200), positive=False)
    unscored = Summable([zero], 300, None)  # a sum of 0 is a match here: no dense cell may stand for it
    plain = Summable([WordScores(200, rows, np.linspace(5.0, 0.1, 200))], 10, None)
    found = rank_many([filtered, unscored, plain])
    assert found == [top(filtered), top(unscored), top(plain)]
    assert all(row % 2 == 0 for row, _ in found[0])
    assert len(found[1]) == 200 and (1, 0.0) in found[1]


def test_a_limit_past_the_rows_gives_every_matching_row():
    rng = random.Random(5)
    searches = [Summable([_word(rng, 1, 30, None), _word(rng, 1, 30, None)], 1000, None) for _ in range(3)]
    assert rank_many(searches) == [top(search) for search in searches]


@pytest.fixture
def fts(tmp_path):
    path = tmp_path / "kw.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    keyword_store.create_table(writer, "lib")
    rng = random.Random(11)
    vocabulary = ["lord", "moses", "camel", "river", "gold", "land", "him", "the"]
    keyword_store.insert_rows(
        writer, "lib", [(i, " ".join(rng.choice(vocabulary) for _ in range(8))) for i in range(1, 201)]
    )
    reader = sqlite3.connect(path, isolation_level=None)
    yield writer, reader
    writer.close()
    reader.close()


def test_searches_of_kept_words_read_nothing_while_the_commit_count_stands(fts):
    writer, reader = fts
    statements: list[str] = []
    reader.set_trace_callback(statements.append)
    cache = TermScoreCache()
    searches = [(("moses", "camel"), 5, None), (("gold", "river", "him"), 5, None)]
    first = keyword_scores.read_many(reader, cache, "lib", searches, commits=7)
    assert statements  # a transaction, the rows, the version, each word
    statements.clear()
    again = keyword_scores.read_many(reader, cache, "lib", searches, commits=7)
    assert statements == []
    assert [top(found) for found in again] == [top(found) for found in first]  # type: ignore[arg-type]
    # A commit, told by the count: the next read checks the store and sees the new row.
    keyword_store.insert_rows(writer, "lib", [(500, "moses camel camel moses")])
    after = keyword_scores.read_many(reader, cache, "lib", searches, commits=8)
    assert statements
    ranked = [found if isinstance(found, list) else top(found) for found in after]
    assert ranked[0][0][0] == 500
    expected = keyword_store.search(reader, "lib", ("moses", "camel"), 5, None)
    assert [score for _, score in ranked[0]] == pytest.approx([score for _, score in expected], rel=1e-12)


def test_a_word_not_kept_sends_the_batch_to_the_store(fts):
    _, reader = fts
    statements: list[str] = []
    reader.set_trace_callback(statements.append)
    cache = TermScoreCache()
    keyword_scores.read_many(reader, cache, "lib", [(("moses",), 5, None)], commits=1)
    statements.clear()
    found = keyword_scores.read_many(reader, cache, "lib", [(("moses",), 5, None), (("land",), 5, None)], commits=1)
    assert statements  # "land" was never read
    assert len(found) == 2


def test_without_a_commit_count_every_batch_checks_the_store(fts):
    _, reader = fts
    statements: list[str] = []
    reader.set_trace_callback(statements.append)
    cache = TermScoreCache()
    for _ in range(2):
        statements.clear()
        keyword_scores.read_many(reader, cache, "lib", [(("moses",), 5, None)])
        assert any("data_version" in statement for statement in statements)


def test_close_rows_are_summed_by_the_kernel_not_one_by_one(monkeypatch):
    from arrwdb.library import keyword_rank

    calls: list[int] = []
    kernel = keyword_rank.SUMMED_TOP

    def counted(*args):
        calls.append(len(args[2]) - 1)
        return kernel(*args)

    def refused(search):
        raise AssertionError("ranked one by one")

    searches = _searches(3, 8, 1_000, 300, None)  # continuous scores: no tie at any cut
    expected = [top(search) for search in searches]
    monkeypatch.setattr(keyword_rank, "SUMMED_TOP", counted)
    monkeypatch.setattr(keyword_rank, "top", refused)
    assert rank_many(searches) == expected
    assert calls == [8]


def test_the_writer_lock_counts_every_use_of_the_writer(tmp_path):
    from arrwdb.store.db import Database

    db = Database(tmp_path / "s.sqlite3")
    before = db.commits()
    with db.write_lock:
        db.writer.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")
        assert db.commits() == before  # raised when the lock is let go: after the commit
    assert db.commits() == before + 1
    with pytest.raises(RuntimeError), db.write_lock:
        raise RuntimeError("a failed write counts too")
    assert db.commits() == before + 2
    db.close()
