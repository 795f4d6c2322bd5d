"""Exact (brute-force) index: a growable matrix on the device (``flat_rows.FlatRows``), scanned by the
torch kernels.

A half-precision index (fp16 on CUDA, bf16 past fp16's range) is scanned with fp32 accumulation and
re-scores the scan's top candidates from its fp32 copy (``rerank.py``), so half storage changes no
result beyond ties.  While the copy is on the GPU a re-rank gathers a few MB in device memory; from a
copy in host memory re-ranks get slower, but the scan is unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arrwdb.index import rerank
from arrwdb.index.flat_rows import FlatRows
from arrwdb.kernels import block_rows_for, normalize_rows, search_exact, topk_group_for
from arrwdb.runtime.device import FP16_MAX

_CPU = torch.device("cpu")


class FlatIndex(FlatRows):
    @classmethod
    def over(
        cls, dimension: int, metric: str, row_ids: np.ndarray, matrix: np.ndarray, alive: np.ndarray, owner: object
    ) -> FlatIndex:
        """A read-only CPU float32 index over rows stored by someone else (``owner``: an ANN graph's own
        storage, ``matrix`` a zero-copy view of it, rows in increasing id order, as stored here: normalised
        for cosine).  It takes no adds and never compacts; deletes are flags.  Its ``memory_bytes``
        leaves the matrix out: the owner counts it."""
        index = cls(dimension, metric, _CPU, torch.float32)
        if not index.adopt(row_ids, matrix):
            raise ValueError("FlatIndex.over: the rows or the matrix do not fit")
        index._owner = owner
        dead = np.flatnonzero(~alive)
        if len(dead):
            index._alive[torch.from_numpy(dead)] = False
            index._tombstones = len(dead)
        return index

    # -- search ------------------------------------------------------------------------------

    def exact_rows(self) -> int:
        return len(self)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        # Normalised (cosine) inside the scripted search: each eager call here would cost the device
        # worker a GIL hand-over (kernels/script.py).
        query_tensor = self._query_tensor(queries)
        mask = self._mask(allowed)
        if self._exact is None:
            scores, positions = self._scan(self._matrix, query_tensor, k, mask, self.metric == "cosine")
        else:
            scores, positions = self._search_half(self._exact, query_tensor, k, mask)
        positions_np = positions.cpu().numpy()
        ids = np.where(positions_np >= 0, self._row_ids[np.maximum(positions_np, 0)], -1)
        return scores.cpu().numpy(), ids

    def _query_tensor(self, queries: np.ndarray) -> torch.Tensor:
        """The queries as given, float32 on the device (not normalised)."""
        return torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)

    def _scan(
        self, matrix: torch.Tensor, queries: torch.Tensor, k: int, mask: torch.Tensor | None, normalize: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel over ``matrix`` (the stored matrix, or the fp32 copy wherever it lives)."""
        where = matrix.device
        scores, positions = search_exact(
            matrix[: self._size],
            queries.to(where),
            k,
            "ip" if self.metric == "cosine" else self.metric,
            mask=None if mask is None else mask.to(where),
            norms_sq=self._norms_sq[: self._size].to(where) if self.metric == "l2" else None,
            block_rows=block_rows_for(where, len(queries)),
            group=topk_group_for(where),
            normalize=normalize,
        )
        return scores.to(self.device), positions.to(self.device)

    def _search_half(
        self, exact: torch.Tensor, queries: torch.Tensor, k: int, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scan the half-precision matrix for candidates, re-rank them from ``exact`` (the fp32 copy),
        widen where unproven (rerank.py; one TorchScript call, the queries normalised inside it for
        cosine)."""
        n = self._size
        scores, positions, widened = rerank.SEARCH_HALF(
            self._matrix[:n],
            exact[:n],
            queries,
            k,
            self.metric == "l2",
            mask,
            self._norms_sq[:n] if self.metric == "l2" else None,
            self.metric == "cosine",
            self._max_norm,
            rerank.unit_roundoff(self.dtype),
            rerank.SAFETY,
            FP16_MAX if self.dtype == torch.float16 else float("inf"),
            rerank.fetch_schedule(k, n),
            block_rows_for(self.device, len(queries)),
            block_rows_for(exact.device, len(queries)),
            topk_group_for(self.device),
            rerank.GATHER_BYTES,
        )
        self.widened_queries += widened
        return scores, positions

    def _exact_scores(self, queries: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """fp32 scores [q, c] of the rows at ``positions`` [q, c] (-1: none, scored -inf)."""
        source = self._exact if self._exact is not None else self._matrix
        norms_sq = self._norms_sq if self.metric == "l2" else None
        return rerank.exact_scores(source, queries, positions, norms_sq, rerank.GATHER_BYTES)

    def _mask(self, allowed: np.ndarray | None) -> torch.Tensor | None:
        if allowed is None:
            return self._alive[: self._size] if self._tombstones else None
        mask = torch.zeros(self._size, dtype=torch.bool, device=self.device)
        positions, present = self._lookup(allowed)
        if present.any():
            mask[torch.from_numpy(positions[present]).to(self.device)] = True
        return mask & self._alive[: self._size]

    # -- views for the ANN builder and re-scoring -------------------------------------------------

    def live_rows(self, after: int = -1) -> np.ndarray:
        """Sorted row ids of the live rows with id > ``after``."""
        if after >= self.upto:  # every search of a built ANN library asks this: no rows past its graph
            return np.empty(0, dtype=np.int64)
        start = int(np.searchsorted(self._row_ids[: self._size], after, side="right"))
        alive = self._alive[start : self._size].cpu().numpy()
        return self._row_ids[start : self._size][alive]

    def copy_rows(self, after: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, float32 vectors) of the live rows with id > ``after``, copied (see rows_as_they_are)."""
        ids, _, vectors = self.rows_as_they_are(after, copy=True)
        return ids, vectors

    def rows_as_they_are(self, after: int = -1, copy: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(row ids, alive flags, float32 rows: normalised for cosine, a half index's fp32 copy) with id >
        ``after``.  Unless ``copy``, rows in host fp32 come uncopied, dead ones flagged: a row below the size
        never changes in place (adds write past it; growth, compaction make new buffers), so a vector
        snapshot reads them off the worker.  Otherwise the live rows are copied (flags None: all live)."""
        start = int(np.searchsorted(self._row_ids[: self._size], after, side="right"))
        ids, alive = self._row_ids[start : self._size], self._alive[start : self._size].cpu().numpy()
        if not copy and self._exact is None and self.dtype == torch.float32 and self.device.type == "cpu":
            return ids.copy(), alive.copy(), self._matrix[start : self._size].numpy()
        source = self._exact if self._exact is not None else self._matrix
        return ids[alive], None, source[start : self._size].to(_CPU)[torch.from_numpy(alive)].float().numpy()

    def vectors_of(self, row_ids: np.ndarray) -> np.ndarray:
        """float32 rows (as stored: normalised for cosine; a half index's fp32 copy) of ``row_ids``,
        which must be present."""
        positions, present = self._lookup(row_ids)
        if not present.all():
            raise KeyError("vectors_of: a row id is not in the index")
        source = self._exact if self._exact is not None else self._matrix
        index = torch.from_numpy(positions).to(source.device)
        return source[index].to(_CPU, torch.float32).numpy()

    def rescore(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Exact fp32 scores of ``candidates`` [q, c] (row ids, -1 = none) for each query: re-ranks what a
        compressed index (SQ8, PQ) proposed.  Missing or deleted candidates score -inf."""
        flat_ids = candidates.reshape(-1)
        positions, present = self._lookup(flat_ids)
        if self._size:
            present &= self._alive[torch.from_numpy(positions).to(self.device)].cpu().numpy()
        positions = np.where(present, positions, -1).reshape(candidates.shape)
        query_tensor = self._query_tensor(queries)
        query_tensor = normalize_rows(query_tensor) if self.metric == "cosine" else query_tensor
        scores = self._exact_scores(query_tensor, torch.from_numpy(positions).to(self.device))
        return scores.cpu().numpy().astype(np.float32)

    # -- figures -----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        buffers = self._buffers()[1:] if self._owner is not None else self._buffers()
        return sum(t.element_size() * t.nelement() for t in buffers) + self._row_ids.nbytes

    def gpu_memory_bytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self._buffers() if t.is_cuda)

    def statistics(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "type": "brute_force",
            "exact": True,
            "backend": f"torch-{self.device.type}",
            "ntotal": len(self),
            "tombstones": self._tombstones,
            "capacity": int(self._matrix.shape[0]),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory_bytes": self.memory_bytes(),
            "gpu_memory_bytes": self.gpu_memory_bytes(),
        }
        if self._exact is not None:
            stats["rerank"] = {"fp32_copy": str(self._exact.device), "widened_queries": self.widened_queries}
        if self.placement_note:
            stats["placement"] = self.placement_note
        return stats
