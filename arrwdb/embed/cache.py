"""A thread-safe LRU cache from text to its embedding, bounded in bytes.

Bounded in bytes rather than entries because texts vary from a word to a whole chunk, and the
operator sizes memory, not counts.  Request threads read it while the device worker fills it, so
every operation takes one lock; the work under the lock is dictionary moves only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np


class EmbeddingCache:
    """LRU from text to vector holding at most ``max_bytes`` (vector nbytes + key length per entry).

    ``max_bytes == 0`` disables it: lookups miss and stores are dropped.  Stored vectors are
    read-only copies, so a caller that mutates its array cannot corrupt the cache, and a vector
    handed out cannot be changed in place by another reader.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @staticmethod
    def _cost(text: str, vector: np.ndarray) -> int:
        return vector.nbytes + len(text)

    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text, or None; a hit becomes the most recently used."""
        if not self.enabled:
            with self._lock:
                self.misses += len(texts)
            return [None] * len(texts)
        out: list[np.ndarray | None] = []
        with self._lock:
            for text in texts:
                vec = self._entries.get(text)
                if vec is None:
                    self.misses += 1
                else:
                    self._entries.move_to_end(text)
                    self.hits += 1
                out.append(vec)
        return out

    def put_many(self, texts: Sequence[str], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        """Store each text's vector, evicting the least recently used entries to stay in budget."""
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if not self.enabled:
            return
        # Copy outside the lock: it is the only part that scales with the vector size.
        items = []
        for text, vector in zip(texts, vectors, strict=True):
            vec = np.array(vector, dtype=np.float32, copy=True)
            vec.flags.writeable = False
            items.append((text, vec))
        with self._lock:
            for text, vec in items:
                cost = self._cost(text, vec)
                old = self._entries.pop(text, None)
                if old is not None:
                    self._nbytes -= self._cost(text, old)
                if cost > self.max_bytes:
                    continue  # could never fit: storing it would only flush everything else
                self._entries[text] = vec
                self._nbytes += cost
                while self._nbytes > self.max_bytes:
                    key, evicted = self._entries.popitem(last=False)
                    self._nbytes -= self._cost(key, evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now, by the same measure as ``max_bytes``."""
        with self._lock:
            return self._nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._entries
