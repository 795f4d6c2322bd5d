"""Keyword search from per-word BM25 scores, kept between searches.

BM25 is a sum over a query's words: FTS5's ``bm25()`` for ``"a" OR "b" OR "c"`` gives a row the sum of
its scores for ``"a"``, ``"b"`` and ``"c"`` alone (same IDF, row length and average length).  So a
search here asks FTS5 once for each word's (row id, score) pairs, keeps them as arrays, and adds up
the arrays of a query's words with numpy: the rows and scores of one FTS5 query for the OR of the
words.  FTS5 has no top-k pruning (WAND / MaxScore): it scores every row holding any of the words, for
every query, and the frequent words a long query holds ("lord", "him", "land") are in most rows.  Their
arrays are what the cache keeps, so a search whose words were seen before costs an addition of arrays
(a 20-word query over 8,000 passages: ~1 ms instead of ~12).

A word's scores depend on the whole library (its rows, their average length, the word's document
frequency), so the cache belongs to one connection and holds the connection's ``PRAGMA data_version``,
which changes whenever another connection commits: after any committed write every entry is dropped,
and a search reads its words' scores inside one read transaction, so nothing it adds up comes from
two versions of the store.

Fetching a word's pairs into Python costs several times what FTS5 spends scoring them, so a search
fetches at most ``fill_budget`` rows of missing words (the rarest first), and answers with one FTS5
query over the OR of its words while any of them is still missing: under a steady stream of writes a
keyword search costs what the FTS5 query costs plus that bounded fill, never an unbounded fetch.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arrwdb.store import keywords as keyword_store

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MIN_FILL_ROWS = 4096  # rows of missing words a search may fetch, at least
FILL_SHARE = 8  # ... or this fraction of the rows its words match, whichever is more
DENSE_SPAN = 8  # row ids spread over at most this many times the pairs: summed by bincount


@dataclass(slots=True)
class WordScores:
    """One word's rows (sorted row ids) and their BM25 scores (higher is better); ``frequency`` is
    the rows holding the word.  A word left out of a search's match (``keyword_store.useful_among``)
    is kept by its frequency alone (``scored`` false, empty arrays) until a search needs its scores.
    Immutable but for ``shared``: the same arrays as whoever adds them up wants them (torch tensors
    over the same memory: arrwdb.library.keyword_rank), set by it once."""

    frequency: int
    row_ids: np.ndarray
    scores: np.ndarray
    scored: bool = True
    positive: bool = True  # every score > 0 (BM25 with FTS5's IDF floor): a sum of 0 is a row no word holds
    shared: Any = field(default=None, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        return int(self.row_ids.nbytes + self.scores.nbytes) + 64


class TermScoreCache:
    """Per-word scores of one connection's libraries, least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, min_fill_rows: int = MIN_FILL_ROWS) -> None:
        self.max_bytes = max_bytes
        self.min_fill_rows = min_fill_rows
        self._entries: OrderedDict[tuple[str, str], WordScores] = OrderedDict()
        self._bytes = 0
        self._version: int | None = None
        # The writer's commit count (Database.commits) read before the read transaction that last
        # checked ``_version``, and the rows of each library's index in that transaction: while the
        # count is the same, no commit happened since, and a search of cached words reads nothing.
        self._commits: int | None = None
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def sync(self, version: int, commits: int | None = None) -> None:
        """Drop every entry when the store changed since they were read (``version``: the reading
        connection's ``PRAGMA data_version``; ``commits``: the writer's commit count read before the
        transaction began)."""
        if version != self._version:
            self._entries.clear()
            self._rows.clear()
            self._bytes = 0
            self._version = version
        self._commits = commits

    def keep_rows(self, library_id: str, rows: int) -> None:
        """The library's indexed rows, as read in the transaction that last called ``sync``."""
        self._rows[library_id] = rows

    def rows_if_current(self, library_id: str, commits: int | None) -> int | None:
        """The library's indexed rows when ``commits`` (the writer's count now) shows no commit since
        the last check, and they were read then; else None: a read transaction must check."""
        if commits is None or commits != self._commits:
            return None
        return self._rows.get(library_id)

    def get(self, library_id: str, word: str) -> WordScores | None:
        found = self._entries.get((library_id, word))
        if found is not None:
            self._entries.move_to_end((library_id, word))
        return found

    def put(self, library_id: str, word: str, entry: WordScores) -> None:
        if entry.nbytes > self.max_bytes // 4:
            return  # one huge word would push out everything else
        old = self._entries.pop((library_id, word), None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[(library_id, word)] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.nbytes


def search(
    conn: sqlite3.Connection,
    cache: TermScoreCache,
    library_id: str,
    words: Sequence[str],
    limit: int,
    allowed: np.ndarray | None,
) -> list[tuple[int, float]]:
    """``keyword_store.search`` (same rows, same scores, best first), from cached per-word scores where
    they are all at hand.  Runs in a read transaction of its own."""
    found = read_many(conn, cache, library_id, [(words, limit, allowed)])[0]
    return found if isinstance(found, list) else top(found)


@dataclass(frozen=True)
class Summable:
    """A search whose words' scores are all kept: its answer is ``top(self)``, or what a batched sum
    of the same arrays gives (kernels/keyword_sum.py), computed outside the read transaction."""

    entries: list[WordScores]  # the words that take part in the match, in the match's order
    limit: int
    allowed: np.ndarray | None


def read_many(
    conn: sqlite3.Connection,
    cache: TermScoreCache,
    library_id: str,
    searches: Sequence[tuple[Sequence[str], int, np.ndarray | None]],
    commits: int | None = None,
) -> list[list[tuple[int, float]] | Summable]:
    """For each (words, limit, allowed) search of one library: its answer (as ``keyword_store.search``)
    when FTS5 gave it, or its words' kept scores to add up.  One read transaction for all of them: a
    batch reads one state of the store, and checks the cache's version once.  ``commits``: the
    store's writer's commit count (``Database.commits``), read now, where that writer is the only
    one: while it is what it was at the last check, a batch whose words are all kept reads nothing."""
    rows = cache.rows_if_current(library_id, commits)
    if rows is not None:
        kept = [_kept(cache, library_id, words, limit, allowed, rows) for words, limit, allowed in searches]
        if all(found is not None for found in kept):
            return kept  # type: ignore[return-value]
    if conn.in_transaction:  # inside someone's transaction: no snapshot of our own to pin the cache to
        return [keyword_store.search(conn, library_id, words, limit, allowed) for words, limit, allowed in searches]
    found: list[list[tuple[int, float]] | Summable] = []
    conn.execute("BEGIN")
    try:
        rows = keyword_store.indexed_rows(conn, library_id)  # the first read: it fixes the snapshot
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        cache.sync(int(version), commits)
        cache.keep_rows(library_id, rows)
        for words, limit, allowed in searches:
            if not words or (allowed is not None and len(allowed) == 0):
                found.append([])
                continue
            useful, entries = _entries(conn, cache, library_id, words, rows)
            if entries is None:
                found.append(keyword_store.ranked(conn, library_id, useful, limit, allowed))
            else:
                found.append(Summable(entries, limit, allowed))
    finally:
        if conn.in_transaction:  # an I/O error may have ended it already
            conn.execute("COMMIT")
    return found


def _kept(
    cache: TermScoreCache, library_id: str, words: Sequence[str], limit: int, allowed: np.ndarray | None, rows: int
) -> list[tuple[int, float]] | Summable | None:
    """A search from the cache alone (``_entries`` without a store read), or None if a word is missing."""
    if not words or (allowed is not None and len(allowed) == 0):
        return []
    known: dict[str, WordScores] = {}
    for word in words:
        entry = cache.get(library_id, word)
        if entry is None:
            return None
        known[word] = entry
    useful = keyword_store.useful_among(words, {word: entry.frequency for word, entry in known.items()}, rows)
    entries = [known[word] for word in useful]
    if not all(entry.scored for entry in entries):
        return None
    return Summable(entries, limit, allowed)


def _entries(
    conn: sqlite3.Connection, cache: TermScoreCache, library_id: str, words: Sequence[str], rows: int
) -> tuple[list[str], list[WordScores] | None]:
    """The words that take part in the match (``keyword_store.useful_among``) and their scores, or
    None for the scores while some are missing after this search's share of fetching."""
    found: dict[str, WordScores] = {}
    frequencies: dict[str, int] = {}
    known: dict[str, WordScores] = {}
    for word in words:
        entry = cache.get(library_id, word)
        if entry is not None:
            known[word] = entry
            frequencies[word] = entry.frequency
        else:
            frequencies[word] = keyword_store.frequency(conn, library_id, word)
    useful_list = keyword_store.useful_among(words, frequencies, rows)
    useful = set(useful_list)
    for word, entry in known.items():
        if entry.scored or word not in useful:
            found[word] = entry
    missing = sorted((w for w in words if w not in found), key=lambda w: frequencies[w])
    budget = max(cache.min_fill_rows, sum(frequencies[w] for w in useful) // FILL_SHARE)
    fetched = 0
    for word in missing:
        if word not in useful:  # left out of the match: its frequency is all that is kept
            found[word] = WordScores(frequencies[word], _EMPTY_IDS, _EMPTY_SCORES, scored=False)
            cache.put(library_id, word, found[word])
            continue
        if fetched and fetched + frequencies[word] > budget:
            break  # the rarest missing word is always fetched: a search never leaves the cache as it was
        found[word] = _fetch(conn, library_id, word)
        fetched += frequencies[word]
        cache.put(library_id, word, found[word])
    if any(word not in found for word in useful):
        return useful_list, None
    return useful_list, [found[word] for word in useful_list]


_EMPTY_IDS = np.empty(0, dtype=np.int64)
_EMPTY_SCORES = np.empty(0, dtype=np.float64)


def _fetch(conn: sqlite3.Connection, library_id: str, word: str) -> WordScores:
    """The word's rows and BM25 scores, made higher-is-better, sorted by row id."""
    table = keyword_store.table_name(library_id)
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: the connection's may build a Row per row
    pairs = cursor.execute(
        f"SELECT rowid, rank FROM {table} WHERE {table} MATCH ? ORDER BY rowid",
        (keyword_store.match_expression([word]),),
    ).fetchall()
    if not pairs:
        return WordScores(0, _EMPTY_IDS, _EMPTY_SCORES)
    row_ids = np.fromiter((pair[0] for pair in pairs), dtype=np.int64, count=len(pairs))
    scores = -np.fromiter((pair[1] for pair in pairs), dtype=np.float64, count=len(pairs))
    return WordScores(len(pairs), row_ids, scores, positive=bool(scores.min() > 0.0))


def top(search: Summable) -> list[tuple[int, float]]:
    """The ``limit`` best rows of the summed scores (ties by row id), only ``allowed`` ones if given."""
    entries, limit, allowed = search.entries, search.limit, search.allowed
    if not entries:
        return []
    row_ids = np.concatenate([entry.row_ids for entry in entries])
    if not len(row_ids):
        return []
    unique, totals = _summed(row_ids, np.concatenate([entry.scores for entry in entries]))
    if allowed is not None:
        at = np.searchsorted(allowed, unique)
        keep = (at < len(allowed)) & (allowed[np.minimum(at, len(allowed) - 1)] == unique)
        unique, totals = unique[keep], totals[keep]
    if len(unique) > limit:
        # Every row that ties with the limit-th best is kept to the sort, so that the lowest row ids of
        # a tie at the cut are the ones kept (argpartition alone picks any of them).
        kth = -np.partition(-totals, limit - 1)[limit - 1]
        best = np.flatnonzero(totals >= kth)
        unique, totals = unique[best], totals[best]
    order = np.lexsort((unique, -totals))[:limit]
    return [(int(unique[i]), float(totals[i])) for i in order]


def _summed(row_ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct row id (ascending) and the sum of its scores.  A library's row ids are mostly
    close together: over a span of at most ``DENSE_SPAN`` times the pairs, one ``bincount`` over the
    span (no sort); else ``np.unique``."""
    low, high = int(row_ids.min()), int(row_ids.max())
    span = high - low + 1
    if span > DENSE_SPAN * len(row_ids):
        unique, position = np.unique(row_ids, return_inverse=True)
        return unique, np.bincount(position, weights=scores)
    offsets = row_ids - low
    held = np.flatnonzero(np.bincount(offsets, minlength=span))
    return held + low, np.bincount(offsets, weights=scores, minlength=span)[held]
