"""The model-free parts of arrwdb.embed: the hash embedder, chunking and the embedding cache."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from arrwdb.embed import (
    Embedder,
    EmbeddingCache,
    HashEmbedder,
    PreparedBatch,
    chunk_texts,
    load_embedder,
    token_windows,
)


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


# --- HashEmbedder ---------------------------------------------------------------------------------


def test_hash_embedder_is_an_embedder() -> None:
    emb = HashEmbedder()
    assert isinstance(emb, Embedder)
    assert (emb.dimension, emb.max_tokens) == (384, 254)
    batch = emb.prepare(["a b", "c"])
    assert isinstance(batch, PreparedBatch) and len(batch) == 2


def test_hash_embedder_deterministic_across_instances_and_batches() -> None:
    texts = ["the quick brown fox", "hello world", "", "the quick brown fox"]
    a = HashEmbedder().embed(texts)
    b = HashEmbedder().embed(texts[::-1])[::-1]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], a[3])
    np.testing.assert_array_equal(HashEmbedder().embed(["hello world"])[0], a[1])


def test_hash_embedder_stable_across_processes() -> None:
    # hashlib, not hash(): another interpreter (other PYTHONHASHSEED) must give the same vector.
    code = "from arrwdb.embed import HashEmbedder; print(HashEmbedder().embed(['stable words'])[0][:4].tolist())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    here = HashEmbedder().embed(["stable words"])[0][:4].tolist()
    assert out.stdout.strip() == str(here)


def test_hash_embedder_rows_are_unit_float32() -> None:
    emb = HashEmbedder(dimension=17)
    vecs = emb.embed(["one", "two words", "", "   ", _words(1000)])
    assert vecs.dtype == np.float32 and vecs.shape == (5, 17)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert emb.embed([]).shape == (0, 17)


def test_hash_embedder_shared_words_are_closer_and_seed_matters() -> None:
    emb = HashEmbedder()
    a, b, c = emb.embed(["red apple pie", "red apple tart", "quantum field theory"])
    assert a @ b > a @ c
    other = HashEmbedder(seed=1).embed(["red apple pie"])[0]
    assert not np.allclose(a, other)


def test_hash_embedder_truncates_to_window() -> None:
    emb = HashEmbedder(max_tokens=10, chunk_overlap=2)
    np.testing.assert_array_equal(emb.embed([_words(10)]), emb.embed([_words(50)]))


# --- chunking -------------------------------------------------------------------------------------


def test_short_text_is_one_span() -> None:
    emb = HashEmbedder(max_tokens=10, chunk_overlap=2)
    for text in ["", "   ", "one", "  padded  text  ", _words(10)]:
        assert emb.chunk_spans(text) == [(0, len(text))]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(10, 2), (10, 0), (7, 6), (254, 32), (1, 0)])
@pytest.mark.parametrize("n_words", [11, 25, 100, 1000])
def test_chunk_spans_cover_text_with_overlap(max_tokens: int, overlap: int, n_words: int) -> None:
    text = "  " + "  ".join(f"word{i}\n" for i in range(n_words)) + " "
    emb = HashEmbedder(max_tokens=max_tokens, chunk_overlap=overlap)
    spans = emb.chunk_spans(text)
    if n_words <= max_tokens:
        assert spans == [(0, len(text))]
        return
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    covered: set[int] = set()
    for (s0, e0), (s1, e1) in itertools.pairwise(spans):
        assert s0 < s1 and e0 < e1  # in order, always advancing
        # Overlapping windows are contiguous; abutting ones (overlap 0) lose only whitespace.
        assert s1 <= e0 if overlap else text[e0:s1].strip() == ""
    for chunk in chunk_texts(text, spans):
        words = chunk.split()
        assert 1 <= len(words) <= max_tokens
        covered.update(int(w[4:]) for w in words)  # chunk boundaries never split a word
    assert covered == set(range(n_words))
    if overlap:
        # Consecutive windows share `overlap` words (exactly, since every word is one token).
        first, second = (set(c.split()) for c in chunk_texts(text, spans[:2]))
        assert len(first & second) == overlap


def test_token_windows_keep_words_whole_and_advance() -> None:
    # word ids of tokens: words of 3 tokens each; windows of 7 must end on word boundaries.
    word_ids = [i // 3 for i in range(30)]
    windows = token_windows(word_ids, max_tokens=7, overlap=2)
    assert windows[0] == (0, 6)
    for s, e in windows:
        assert e - s <= 7
        assert s == 0 or word_ids[s] != word_ids[s - 1]
        assert e == 30 or word_ids[e] != word_ids[e - 1]
    assert windows[-1][1] == 30
    # A single word longer than the window must still be cut, and the loop must terminate.
    windows = token_windows([0] * 20, max_tokens=7, overlap=3)
    assert all(e - s <= 7 for s, e in windows) and windows[-1][1] == 20


def test_bad_window_settings_rejected() -> None:
    with pytest.raises(ValueError):
        HashEmbedder(max_tokens=10, chunk_overlap=10)
    with pytest.raises(ValueError):
        HashEmbedder(max_tokens=0)


# --- EmbeddingCache -------------------------------------------------------------------------------


def _vec(x: float, dim: int = 4) -> np.ndarray:
    return np.full(dim, x, dtype=np.float32)


def test_cache_hits_misses_and_readonly_copies() -> None:
    cache = EmbeddingCache(max_bytes=10_000)
    v = _vec(1.0)
    cache.put_many(["a"], [v])
    v[:] = 9.0  # the caller's array is not the cached one
    got = cache.get_many(["a", "b"])
    assert got[1] is None
    np.testing.assert_array_equal(got[0], _vec(1.0))
    assert not got[0].flags.writeable
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
    assert cache.nbytes == 16 + 1


def test_cache_evicts_least_recently_used_by_bytes() -> None:
    entry = 16 + 2  # 4 float32 + 2-character key
    cache = EmbeddingCache(max_bytes=3 * entry)
    cache.put_many(["k1", "k2", "k3"], np.stack([_vec(1), _vec(2), _vec(3)]))
    cache.get_many(["k1"])  # k1 is now the most recent: k2 goes first
    cache.put_many(["k4"], [_vec(4)])
    assert len(cache) == 3 and cache.nbytes == 3 * entry
    assert "k2" not in cache and "k1" in cache
    # A big vector pushes out as many old entries as it needs.
    cache.put_many(["k5"], [_vec(5, dim=8)])  # 32 + 2 bytes: two old entries must go
    assert cache.nbytes <= cache.max_bytes
    assert "k5" in cache and "k4" in cache and "k1" not in cache and "k3" not in cache
    # Too big to ever fit: not stored, nothing evicted.
    cache.put_many(["huge"], [_vec(0, dim=100)])
    assert "huge" not in cache and len(cache) == 2


def test_cache_replacing_a_key_keeps_byte_count_right() -> None:
    cache = EmbeddingCache(max_bytes=1000)
    cache.put_many(["a"], [_vec(1, dim=4)])
    cache.put_many(["a"], [_vec(2, dim=8)])
    assert len(cache) == 1 and cache.nbytes == 32 + 1
    np.testing.assert_array_equal(cache.get_many(["a"])[0], _vec(2, dim=8))
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_cache_disabled() -> None:
    cache = EmbeddingCache(max_bytes=0)
    cache.put_many(["a"], [_vec(1)])
    assert cache.get_many(["a"]) == [None]
    assert len(cache) == 0 and cache.nbytes == 0 and cache.hits == 0
    with pytest.raises(ValueError):
        EmbeddingCache(max_bytes=-1)
    with pytest.raises(ValueError):
        EmbeddingCache(max_bytes=100).put_many(["a", "b"], [_vec(1)])


def test_cache_thread_safety_smoke() -> None:
    cache = EmbeddingCache(max_bytes=50 * (16 + 3))
    errors: list[BaseException] = []

    def worker(tid: int) -> None:
        try:
            for i in range(2000):
                key = f"{(i * 7 + tid) % 100:03d}"
                cache.put_many([key], [_vec(float(key))])
                got = cache.get_many([key, f"{i % 100:03d}"])
                for k, v in zip([key, f"{i % 100:03d}"], got, strict=True):
                    if v is not None:
                        assert v[0] == float(k)  # never another key's vector
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.nbytes <= cache.max_bytes and cache.nbytes == len(cache) * (16 + 3)
    assert cache.hits + cache.misses == 4 * 2000 * 2


def test_import_does_not_load_torch() -> None:
    code = "import sys, arrwdb.embed; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_load_embedder_hash_and_unknown() -> None:
    assert isinstance(load_embedder(model="hash"), HashEmbedder)
    with pytest.raises(ValueError):
        load_embedder(model="no-such-model")
