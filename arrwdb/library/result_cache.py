"""A cache of search results, keyed by library version and bounded in bytes.

Correctness rests on the key, not on invalidation messages.  Each key holds the library's
*generation*: its write version (``LibraryState.version``, bumped on the device worker by every
applied write, before that write is acknowledged) and, for ANN libraries, the build counters (a
swapped-in index may rank differently).  The generation is read when the search is submitted and the
result is stored under it after the worker computed it.  Every part of the generation only grows,
and the worker computes after the read, so the result reflects that generation or a later one; a
later lookup that reads the same generation therefore sees exactly the state the result came from.
A search after an acknowledged write reads the bumped version and can never meet an older entry:
read-your-writes holds without ever scanning the cache.  Stale entries are simply never hit again and
age out of the LRU.

Only the event loop touches the cache (lookups before scheduling, stores after the awaited result),
so it takes no lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import orjson

from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.library.library import LibraryState

CacheKey = tuple[Hashable, ...]

_ENTRY_OVERHEAD = 256  # the OrderedDict slot, the key tuple and the result tuple
_HIT_OVERHEAD = 160  # one Hit object with its float, int and references
_JSON_OVERHEAD = 200  # a HitsJSON, its orjson.Fragment and its bytes object


def library_generation(state: LibraryState) -> tuple[int, int, int]:
    """What a cached result of ``state`` is valid for: its write version and its ANN builds."""
    index = state.index
    return state.version, int(getattr(index, "builds", 0)), int(getattr(index, "built_upto", -1))


def query_key(library_id: str, generation: tuple[int, int, int], query: SearchInput) -> CacheKey:
    """The canonical form of one query against one library generation."""
    if query.embedding is not None:
        what: Hashable = ("e", query.embedding.dtype.str, query.embedding.tobytes())
    else:
        what = ("q", query.query)
    params = orjson.dumps(query.params, option=orjson.OPT_SORT_KEYS) if query.params else b""
    return (
        library_id,
        generation,
        what,
        query.k,
        query.filter_key,
        query.include_text,
        params,
        query.json,
        query.rows,
        query.retrieval,  # a frozen dataclass: its fields are the key
    )


def _key_bytes(key: CacheKey) -> int:
    what = key[2]
    payload = what[-1] if isinstance(what, tuple) else what
    size = len(payload) if isinstance(payload, bytes | str) else 0
    return size + len(key[0]) + len(key[4]) + len(key[6])


def _hit_bytes(hit: Hit) -> int:
    # An estimate, like the embedding cache's: strings by length, metadata by its JSON size.
    size = _HIT_OVERHEAD + len(hit.document_id) + len(hit.title or "") + len(hit.text or "")
    if hit.metadata:
        size += len(orjson.dumps(hit.metadata))
    return size


class ResultCache:
    """LRU from a query key to its hits, holding at most ``max_bytes`` by the estimate above.

    ``max_bytes == 0`` disables it.  Results are stored as tuples (the HTTP layer only reads them),
    or as the JSON they were answered with (``SearchInput.json``: a key of its own).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, tuple[tuple[Hit, ...] | HitsJSON, int]] = OrderedDict()
        self._nbytes = 0
        self.hits = 0
        self.misses = 0

    def lookup(
        self, state: LibraryState, queries: Sequence[SearchInput]
    ) -> tuple[list[CacheKey | None], list[list[Hit] | HitsJSON | None]]:
        """Each query's cache key and cached hits (None on a miss, or with the cache off).

        The library's generation is read here, before anything is submitted: see above for why that
        ordering makes a stored result safe to serve to every later lookup of its key.
        """
        if not self.enabled:
            return [None] * len(queries), [None] * len(queries)
        generation = library_generation(state)
        # A leg's rows (SearchInput.rows) are not kept: the fused answer is.
        keys: list[CacheKey | None] = [
            None if query.rows else query_key(state.record.id, generation, query) for query in queries
        ]
        return keys, [None if key is None else self.get(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> list[Hit] | HitsJSON | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        found = entry[0]
        return found if isinstance(found, HitsJSON) else list(found)

    def put(self, key: CacheKey, hits: Sequence[Hit] | HitsJSON) -> None:
        if not self.enabled:
            return
        if isinstance(hits, HitsJSON):
            stored: tuple[Hit, ...] | HitsJSON = hits
            cost = _ENTRY_OVERHEAD + _key_bytes(key) + hits.nbytes + _JSON_OVERHEAD
        else:
            stored = tuple(hits)
            cost = _ENTRY_OVERHEAD + _key_bytes(key) + sum(_hit_bytes(hit) for hit in stored)
        old = self._entries.pop(key, None)
        if old is not None:
            self._nbytes -= old[1]
        if cost > self.max_bytes:
            return  # could never fit: storing it would only flush everything else
        self._entries[key] = (stored, cost)
        self._nbytes += cost
        while self._nbytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._nbytes -= evicted

    def clear(self) -> None:
        self._entries.clear()
        self._nbytes = 0
