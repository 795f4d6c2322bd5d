"""Exact (brute-force) index: a growable matrix on the device, scanned by the torch kernels.

Rows are appended in row-id order (the store hands out increasing ids and the engine applies commits
in order), so a row id maps to its position by binary search and no per-row dictionary is needed.
Deletes are tombstones in a mask that the kernel applies before top-k; the matrix is compacted once
tombstones pass half of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from arrwdb.kernels import normalize_rows, search_exact

_MIN_CAPACITY = 1024
_COMPACT_MIN_TOMBSTONES = 4096


class FlatIndex:
    def __init__(self, dimension: int, metric: str, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.dimension = dimension
        self.metric = metric
        self.device = device
        self.dtype = dtype
        self._size = 0  # rows used, tombstones included
        self._tombstones = 0
        self._matrix = torch.zeros((_MIN_CAPACITY, dimension), dtype=dtype, device=device)
        self._norms_sq = torch.zeros(_MIN_CAPACITY, dtype=torch.float32, device=device)
        self._alive = torch.zeros(_MIN_CAPACITY, dtype=torch.bool, device=device)
        self._row_ids = np.zeros(_MIN_CAPACITY, dtype=np.int64)

    def __len__(self) -> int:
        return self._size - self._tombstones

    # -- mutation ----------------------------------------------------------------------------

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        count = len(row_ids)
        if count == 0:
            return
        if self._size and int(row_ids[0]) <= int(self._row_ids[self._size - 1]):
            raise RuntimeError("rows must be added in increasing row-id order")
        self._reserve(self._size + count)
        block = torch.from_numpy(np.require(vectors, dtype=np.float32, requirements=["C", "W"])).to(self.device)
        if self.metric == "cosine":
            block = normalize_rows(block)
        end = self._size + count
        self._matrix[self._size : end] = block.to(self.dtype)
        self._norms_sq[self._size : end] = (block * block).sum(dim=1)
        self._alive[self._size : end] = True
        self._row_ids[self._size : end] = row_ids
        self._size = end

    def remove(self, row_ids: np.ndarray) -> None:
        positions = self._positions(row_ids)
        if len(positions) == 0:
            return
        index = torch.from_numpy(positions).to(self.device)
        newly_dead = int(self._alive[index].sum())
        self._alive[index] = False
        self._tombstones += newly_dead
        if self._tombstones >= _COMPACT_MIN_TOMBSTONES and self._tombstones * 2 >= self._size:
            self._compact()

    def _positions(self, row_ids: np.ndarray) -> np.ndarray:
        """Positions of the given row ids that are present (absent ids are ignored)."""
        if self._size == 0 or len(row_ids) == 0:
            return np.empty(0, dtype=np.int64)
        known = self._row_ids[: self._size]
        wanted = np.asarray(row_ids, dtype=np.int64)
        positions = np.searchsorted(known, wanted)
        positions = np.minimum(positions, self._size - 1)
        return positions[known[positions] == wanted]

    def _reserve(self, rows: int) -> None:
        capacity = self._matrix.shape[0]
        if rows <= capacity:
            return
        new_capacity = max(rows, capacity * 2)
        self._matrix = self._grown(self._matrix, new_capacity)
        self._norms_sq = self._grown(self._norms_sq, new_capacity)
        self._alive = self._grown(self._alive, new_capacity)
        grown_ids = np.zeros(new_capacity, dtype=np.int64)
        grown_ids[: self._size] = self._row_ids[: self._size]
        self._row_ids = grown_ids

    def _grown(self, tensor: torch.Tensor, capacity: int) -> torch.Tensor:
        grown = torch.zeros((capacity, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        grown[: self._size] = tensor[: self._size]
        return grown

    def _compact(self) -> None:
        keep = self._alive[: self._size]
        keep_np = keep.cpu().numpy()
        live = int(keep_np.sum())
        capacity = max(_MIN_CAPACITY, live * 2)
        matrix = torch.zeros((capacity, self.dimension), dtype=self.dtype, device=self.device)
        matrix[:live] = self._matrix[: self._size][keep]
        norms = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        norms[:live] = self._norms_sq[: self._size][keep]
        alive = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        alive[:live] = True
        row_ids = np.zeros(capacity, dtype=np.int64)
        row_ids[:live] = self._row_ids[: self._size][keep_np]
        self._matrix, self._norms_sq, self._alive, self._row_ids = matrix, norms, alive, row_ids
        self._size, self._tombstones = live, 0

    # -- search ------------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        query_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        if self.metric == "cosine":
            query_tensor = normalize_rows(query_tensor)
        mask = self._mask(allowed)
        scores, positions = search_exact(
            self._matrix[: self._size],
            query_tensor,
            k,
            "ip" if self.metric == "cosine" else self.metric,
            mask=mask,
            norms_sq=self._norms_sq[: self._size] if self.metric == "l2" else None,
        )
        positions_np = positions.cpu().numpy()
        ids = np.where(positions_np >= 0, self._row_ids[np.maximum(positions_np, 0)], -1)
        return scores.cpu().numpy(), ids

    def _mask(self, allowed: np.ndarray | None) -> torch.Tensor | None:
        if allowed is None:
            return self._alive[: self._size] if self._tombstones else None
        mask = torch.zeros(self._size, dtype=torch.bool, device=self.device)
        positions = self._positions(allowed)
        if len(positions):
            mask[torch.from_numpy(positions).to(self.device)] = True
        return mask & self._alive[: self._size]

    # -- views for the ANN builder and re-scoring -------------------------------------------------

    def live_rows(self, after: int = -1) -> np.ndarray:
        """Sorted row ids of the live rows with id > ``after``."""
        start = int(np.searchsorted(self._row_ids[: self._size], after, side="right"))
        alive = self._alive[start : self._size].cpu().numpy()
        return self._row_ids[start : self._size][alive]

    def copy_rows(self, after: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, float32 vectors) of the live rows with id > ``after``, copied off the device.
        Cosine rows come back normalised, as they are stored."""
        start = int(np.searchsorted(self._row_ids[: self._size], after, side="right"))
        alive = self._alive[start : self._size]
        vectors = self._matrix[start : self._size][alive].float().cpu().numpy()
        return self._row_ids[start : self._size][alive.cpu().numpy()].copy(), vectors

    def rescore(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Exact scores of ``candidates`` [q, c] (row ids, -1 = none) for each query: re-ranks what a
        compressed index (SQ8, PQ) proposed.  Missing or deleted candidates score -inf."""
        flat_ids = candidates.reshape(-1)
        positions = np.searchsorted(self._row_ids[: self._size], flat_ids)
        positions = np.minimum(positions, max(self._size - 1, 0))
        present = (flat_ids >= 0) & (self._size > 0)
        if self._size:
            present &= self._row_ids[positions] == flat_ids
            present &= self._alive[torch.from_numpy(positions).to(self.device)].cpu().numpy()
        query_tensor = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device)
        if self.metric == "cosine":
            query_tensor = normalize_rows(query_tensor)
        rows = self._matrix[torch.from_numpy(positions).to(self.device)].float()
        rows = rows.reshape(candidates.shape[0], candidates.shape[1], self.dimension)
        dots = torch.einsum("qd,qcd->qc", query_tensor, rows)
        if self.metric == "l2":
            norms = self._norms_sq[torch.from_numpy(positions).to(self.device)].reshape(candidates.shape)
            dots = -(query_tensor.pow(2).sum(dim=1, keepdim=True) - 2 * dots + norms).clamp(min=0)
        scores = dots.cpu().numpy().astype(np.float32)
        scores[~present.reshape(candidates.shape)] = -np.inf
        return scores

    # -- figures -----------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        tensors = (self._matrix, self._norms_sq, self._alive)
        return sum(t.element_size() * t.nelement() for t in tensors) + self._row_ids.nbytes

    def statistics(self) -> dict[str, Any]:
        return {
            "type": "brute_force",
            "exact": True,
            "ntotal": len(self),
            "tombstones": self._tombstones,
            "capacity": int(self._matrix.shape[0]),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "memory_bytes": self.memory_bytes(),
        }
