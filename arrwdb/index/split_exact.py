"""The exact side of an ANN library, in two parts, so that a built HNSW library holds one copy of each
vector:

- ``base``: the rows inside the published HNSW graph, read in place from the graph's own storage
  (``FlatIndex.over`` a zero-copy view), or None;
- ``tail``: every other row (all of them while there is no base), in a growable ``FlatIndex``.

Every base row id is below every tail row id (the graph holds the rows up to ``built_upto``, new rows
come with higher ids), so a row id says which part holds it.  Searches scan the parts that can hold
an eligible row and merge; the fresh segment's searches touch the tail only.  ``rebase`` moves rows
between the parts when a new graph is published.  Same interface as ``FlatIndex`` for what
``AnnIndex``, the builder and the warm-up use.  Mutated only on the device worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arrwdb.index.flat import FlatIndex


class SplitExact:
    def __init__(self, tail: FlatIndex) -> None:
        self.base: FlatIndex | None = None
        self.tail = tail
        self.dimension = tail.dimension
        self.metric = tail.metric

    # -- the tail's figures ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.tail.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tail.dtype

    @property
    def placement_note(self) -> str:
        return self.tail.placement_note

    def can_share(self) -> bool:
        """Whether a graph's storage can serve as the base: only host float32 rows are read in place."""
        return self.tail.device.type == "cpu" and self.tail.dtype == torch.float32

    def __len__(self) -> int:
        return len(self.tail) + (len(self.base) if self.base is not None else 0)

    def _base_upto(self) -> int:
        """The highest row id the base can hold (-1 without a base)."""
        return self.base.upto if self.base is not None else -1

    # -- mutation -------------------------------------------------------------------------------

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        self.tail.add(row_ids, vectors)

    def adopt(self, row_ids: np.ndarray, buffer: np.ndarray) -> bool:
        return self.base is None and self.tail.adopt(row_ids, buffer)

    def remove(self, row_ids: np.ndarray) -> None:
        if self.base is not None:
            self.base.remove(row_ids)
        self.tail.remove(row_ids)

    def rebase(self, shared: tuple[np.ndarray, np.ndarray, object] | None, upto: int) -> None:
        """Publish a new graph that holds the rows up to ``upto``: ``shared`` is (its row ids in increasing
        order, a zero-copy float32 view of its stored rows, the graph) when its storage can be the base,
        else None (every row then lives in the tail).  Rows the graph holds that are deleted by now stay
        flagged dead; rows above ``upto`` form the new tail (a copy of the few that came meanwhile).  A
        graph that lacks a live row up to ``upto`` (a snapshot older than the store) is not shared."""
        live = self.live_rows()
        if shared is not None and self.can_share() and _member(live[live <= upto], shared[0]).all():
            ids, matrix, owner = shared
            alive = _member(ids, live)
            base = FlatIndex.over(self.dimension, self.metric, ids, matrix, alive, owner)
            tail = FlatIndex(self.dimension, self.metric, self.tail.device, self.tail.dtype)
            rows, vectors = self.copy_rows(after=upto)
            tail.add(rows, vectors)
            self.base, self.tail = base, tail
        elif self.base is not None:  # no storage to read in place: the tail takes every row again
            tail = FlatIndex(self.dimension, self.metric, self.tail.device, self.tail.dtype)
            rows, vectors = self.copy_rows()
            tail.add(rows, vectors)
            self.base, self.tail = None, tail

    # -- search ---------------------------------------------------------------------------------

    def _parts(self, allowed: np.ndarray | None) -> list[tuple[FlatIndex, np.ndarray | None]]:
        """The parts that can hold an eligible row, each with its share of ``allowed`` (sorted)."""
        if self.base is None:
            return [(self.tail, allowed)]
        if allowed is None:
            return [(self.base, None), (self.tail, None)]
        split = int(np.searchsorted(allowed, self._base_upto(), side="right"))
        parts = []
        if split > 0:
            parts.append((self.base, allowed[:split]))
        if split < len(allowed):
            parts.append((self.tail, allowed[split:]))
        return parts or [(self.tail, allowed[:0])]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, params: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        parts = self._parts(allowed)
        results = [part.search(queries, k, wanted) for part, wanted in parts]
        if len(results) == 1:
            return results[0]
        scores = np.concatenate([r[0] for r in results], axis=1)
        ids = np.concatenate([r[1] for r in results], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(ids, order, 1)

    def rescore(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        if self.base is None:
            return self.tail.rescore(queries, candidates)
        in_base = candidates <= self._base_upto()
        from_base = self.base.rescore(queries, np.where(in_base, candidates, -1))
        from_tail = self.tail.rescore(queries, np.where(in_base, -1, candidates))
        return np.where(in_base, from_base, from_tail).astype(np.float32)

    # -- views ----------------------------------------------------------------------------------

    def live_rows(self, after: int = -1) -> np.ndarray:
        if self.base is None or after >= self._base_upto():
            return self.tail.live_rows(after)
        return np.concatenate([self.base.live_rows(after), self.tail.live_rows(after)])

    def copy_rows(self, after: int = -1) -> tuple[np.ndarray, np.ndarray]:
        if self.base is None or after >= self._base_upto():
            return self.tail.copy_rows(after)
        base_ids, base_vectors = self.base.copy_rows(after)
        tail_ids, tail_vectors = self.tail.copy_rows(after)
        return np.concatenate([base_ids, tail_ids]), np.concatenate([base_vectors, tail_vectors])

    def rows_as_they_are(self, after: int = -1, copy: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        if self.base is None or after >= self._base_upto():
            return self.tail.rows_as_they_are(after, copy)
        ids, vectors = self.copy_rows(after)
        return ids, None, vectors

    def vectors_of(self, row_ids: np.ndarray) -> np.ndarray:
        if self.base is None:
            return self.tail.vectors_of(row_ids)
        in_base = np.asarray(row_ids) <= self._base_upto()
        out = np.empty((len(row_ids), self.dimension), dtype=np.float32)
        if in_base.any():
            out[in_base] = self.base.vectors_of(row_ids[in_base])
        if (~in_base).any():
            out[~in_base] = self.tail.vectors_of(row_ids[~in_base])
        return out

    # -- figures --------------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        return self.tail.memory_bytes() + (self.base.memory_bytes() if self.base is not None else 0)

    def gpu_memory_bytes(self) -> int:
        return self.tail.gpu_memory_bytes()

    def shared_rows(self) -> int:
        """Rows read in place from the graph's storage (dead ones included)."""
        return self.base.stored_rows if self.base is not None else 0


def _member(ids: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Whether each of ``ids`` is in ``sorted_values``."""
    if len(sorted_values) == 0:
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, ids), len(sorted_values) - 1)
    return sorted_values[at] == ids
