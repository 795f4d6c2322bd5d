"""The search-result cache on its own: keys, the byte bound, LRU order, and off."""

from __future__ import annotations

import numpy as np
import pytest

from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.library.result_cache import ResultCache, query_key


def hits(n: int, text: str = "x" * 100) -> list[Hit]:
    return [Hit(f"d{i}", 0, 1.0 - i / 100, "title", text, {"topic": "pets"}) for i in range(n)]


def key(text: str, version: int = 0, **fields) -> tuple:
    return query_key("lib", (version, 0, -1), SearchInput(query=text, embedding=None, **fields))


def test_get_returns_what_was_put_and_counts():
    cache = ResultCache(1 << 20)
    assert cache.get(key("a")) is None
    cache.put(key("a"), hits(3))
    assert cache.get(key("a")) == hits(3)
    assert (cache.hits, cache.misses) == (1, 1)


def test_every_part_of_the_query_and_the_generation_is_in_the_key():
    base = key("a")
    variants = [
        key("b"),
        key("a", version=1),
        key("a", k=5),
        key("a", filter_key='{"topic":"pets"}'),
        key("a", include_text=False),
        key("a", params={"ef_search": 64}),
        query_key("lib", (0, 1, -1), SearchInput(query="a", embedding=None)),
        query_key("lib", (0, 0, 10), SearchInput(query="a", embedding=None)),
        query_key("other", (0, 0, -1), SearchInput(query="a", embedding=None)),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_embedding_queries_key_on_the_vector_bytes():
    vector = np.array([0.1, 0.2, 0.3])
    first = query_key("lib", (0, 0, -1), SearchInput(query=None, embedding=vector))
    same = query_key("lib", (0, 0, -1), SearchInput(query=None, embedding=vector.copy()))
    other = query_key("lib", (0, 0, -1), SearchInput(query=None, embedding=vector + 1e-9))
    assert first == same
    assert first != other


def test_bounded_in_bytes_evicting_the_least_recently_used():
    cache = ResultCache(20_000)
    for i in range(100):
        cache.put(key(f"q{i}"), hits(10))
        assert cache.nbytes <= 20_000
    assert 0 < len(cache) < 100
    assert cache.get(key("q99")) is not None  # the newest survive
    assert cache.get(key("q0")) is None
    survivor = next(f"q{i}" for i in range(100) if key(f"q{i}") in cache._entries)
    cache.get(key(survivor))  # touched: now the most recently used
    cache.put(key("new"), hits(10))
    assert cache.get(key(survivor)) is not None


def test_an_entry_larger_than_the_budget_is_not_stored():
    cache = ResultCache(1000)
    cache.put(key("small"), hits(1, text="y"))
    cache.put(key("huge"), hits(50))
    assert cache.get(key("huge")) is None
    assert cache.get(key("small")) is not None


def test_replacing_an_entry_keeps_the_byte_count_exact():
    cache = ResultCache(1 << 20)
    cache.put(key("a"), hits(5))
    once = cache.nbytes
    cache.put(key("a"), hits(5))
    assert cache.nbytes == once
    cache.clear()
    assert (cache.nbytes, len(cache)) == (0, 0)


def test_zero_bytes_turns_it_off():
    cache = ResultCache(0)
    assert not cache.enabled
    cache.put(key("a"), hits(1))
    assert cache.get(key("a")) is None
    with pytest.raises(ValueError):
        ResultCache(-1)


def test_handed_out_results_cannot_change_the_cache():
    cache = ResultCache(1 << 20)
    cache.put(key("a"), hits(2))
    got = cache.get(key("a"))
    got.clear()
    assert cache.get(key("a")) == hits(2)
