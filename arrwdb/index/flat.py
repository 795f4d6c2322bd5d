"""Exact (brute-force) index: a growable matrix on the device, scanned by the torch kernels.

Rows are appended in row-id order (the store hands out increasing ids and the engine applies commits
in order), so a row id maps to its position by binary search and no per-row dictionary is needed.
Deletes are tombstones in a mask that the kernel applies before top-k; the matrix is compacted once
tombstones pass half of it.

Storage follows the device (``arrwdb.runtime.device.storage_dtype``): float32 on a CPU; fp16 on CUDA (bf16 once
a stored value exceeds fp16's range), scanned with fp32 accumulation.  A half-precision index keeps an
fp32 copy of its rows and re-scores the scan's top candidates from it (``rerank.py``), so half storage
changes no result beyond ties.  The copy stays on the GPU while it fits there (a re-rank then gathers a
few MB in device memory) and moves to host memory when it does not: re-ranks get slower, but the fp16
matrix that every query scans keeps its place.  When even that matrix does not fit, the whole index
falls back to float32 on the CPU, with a log line and a statistic; it never crashes on GPU memory.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from arrwdb.index import rerank
from arrwdb.kernels import block_rows_for, normalize_rows, search_exact, topk_group_for
from arrwdb.runtime.device import FP16_MAX, GpuBudget, plan_placement, release_cached_memory, storage_dtype

log = logging.getLogger("arrwdb.index.flat")

_MIN_CAPACITY = 1024
_COMPACT_MIN_TOMBSTONES = 4096
_CPU = torch.device("cpu")


class FlatIndex:
    def __init__(
        self,
        dimension: int,
        metric: str,
        device: torch.device,
        dtype: torch.dtype | None = None,
        *,
        budget: GpuBudget | None = None,
    ) -> None:
        """``dtype`` None follows the device; ``budget`` decides what fits on the device (by default
        the CUDA driver's free memory on CUDA, no limit elsewhere; tests hand in a fake one)."""
        self.dimension = dimension
        self.metric = metric
        self.device = device
        self.dtype = dtype or storage_dtype(device)
        if budget is None and device.type == "cuda":
            budget = GpuBudget.for_device(device)
        self._budget = budget
        self.placement_note = ""  # why the index (or its fp32 copy) is not on the device asked for
        self.widened_queries = 0  # queries whose re-rank had to fetch more candidates
        self._size = 0  # rows used, tombstones included
        self._tombstones = 0
        self._max_norm = 0.0  # of every row ever added: bounds the half-precision error (rerank.py)
        self._matrix = torch.empty((0, dimension), dtype=self.dtype, device=device)
        self._norms_sq = torch.empty(0, dtype=torch.float32, device=device)
        self._alive = torch.empty(0, dtype=torch.bool, device=device)
        half = self.dtype != torch.float32
        self._exact = torch.empty((0, dimension), dtype=torch.float32, device=device) if half else None
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._owner: object = None  # set by ``over``: what owns the matrix, kept alive with it
        self._reserve(_MIN_CAPACITY)

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

    def __len__(self) -> int:
        return self._size - self._tombstones

    def exact_rows(self) -> int:
        return len(self)

    @property
    def stored_rows(self) -> int:
        """Rows stored, deleted ones included."""
        return self._size

    @property
    def upto(self) -> int:
        """The highest row id stored (-1 when empty)."""
        return int(self._row_ids[self._size - 1]) if self._size else -1

    # -- mutation ----------------------------------------------------------------------------

    def add(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        count = len(row_ids)
        if count == 0:
            return
        if self._size and int(row_ids[0]) <= int(self._row_ids[self._size - 1]):
            raise RuntimeError("rows must be added in increasing row-id order")
        self._reserve(self._size + count)  # first: it may move the index to the CPU
        block = torch.from_numpy(np.require(vectors, dtype=np.float32, requirements=["C", "W"])).to(self.device)
        if self.metric == "cosine":
            block = normalize_rows(block)
        norms_sq = (block * block).sum(dim=1)
        largest, max_norm_sq = torch.stack((block.abs().amax(), norms_sq.amax())).tolist()  # one sync
        if self.dtype == torch.float16 and largest > FP16_MAX:
            self._widen_to_bf16(largest)
            block = block.to(self.device)
        end = self._size + count
        self._matrix[self._size : end] = block.to(self.dtype)
        self._norms_sq[self._size : end] = norms_sq.to(self.device)
        if self._exact is not None:
            self._exact[self._size : end] = block.to(self._exact.device)
        self._alive[self._size : end] = True
        self._row_ids[self._size : end] = row_ids
        self._max_norm = max(self._max_norm, max_norm_sq**0.5)
        self._size = end

    def adopt(self, row_ids: np.ndarray, buffer: np.ndarray) -> bool:
        """Make ``buffer`` (writable float32 [capacity, dimension], first rows = ``row_ids`` as stored here:
        normalised for cosine) the matrix of this empty CPU float32 index, without a copy: a cold start
        touches a million vectors once, not five times.  False (nothing done) where that cannot be."""
        count = len(row_ids)
        index_fits = self._size == 0 and self.device.type == "cpu" and self.dtype == torch.float32
        shape_fits = buffer.ndim == 2 and buffer.shape[1] == self.dimension and buffer.shape[0] >= max(count, 1)
        layout_fits = buffer.dtype == np.float32 and buffer.flags.c_contiguous and buffer.flags.writeable
        if not (index_fits and shape_fits and layout_fits and bool(np.all(row_ids[1:] > row_ids[:-1]))):
            return False
        matrix = torch.from_numpy(buffer)
        capacity = matrix.shape[0]
        norms_sq = torch.zeros(capacity, dtype=torch.float32)
        norms_sq[:count] = torch.linalg.vector_norm(matrix[:count], dim=1).square_()
        alive = torch.arange(capacity) < count
        ids = np.concatenate((np.asarray(row_ids, dtype=np.int64), np.zeros(capacity - count, dtype=np.int64)))
        self._matrix, self._norms_sq, self._alive, self._row_ids = matrix, norms_sq, alive, ids
        self._max_norm = float(norms_sq.max()) ** 0.5
        self._size = count
        return True

    def remove(self, row_ids: np.ndarray) -> None:
        positions, present = self._lookup(row_ids)
        positions = positions[present]  # absent ids are ignored
        if len(positions) == 0:
            return
        index = torch.from_numpy(positions).to(self.device)
        newly_dead = int(self._alive[index].sum())
        self._alive[index] = False
        self._tombstones += newly_dead
        if self._tombstones >= _COMPACT_MIN_TOMBSTONES and self._tombstones * 2 >= self._size:
            self._compact()

    def _lookup(self, row_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row id's position (binary search: rows are in id order) and whether it is there at all."""
        wanted = np.asarray(row_ids, dtype=np.int64)
        if self._size == 0:
            return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
        positions = np.minimum(np.searchsorted(self._row_ids[: self._size], wanted), self._size - 1)
        return positions, self._row_ids[positions] == wanted

    # -- placement -----------------------------------------------------------------------------

    def _buffers(self) -> list[torch.Tensor]:
        return [self._matrix, self._norms_sq, self._alive] + ([] if self._exact is None else [self._exact])

    def _reserve(self, rows: int) -> None:
        capacity = self._matrix.shape[0]
        if rows <= capacity:
            return
        if self._owner is not None:
            raise RuntimeError("an index over another's storage takes no rows")
        new_capacity = max(rows, capacity * 2, _MIN_CAPACITY)
        if self._budget is not None:
            # By type: the index's device may be named without its index ("cuda") while its tensors
            # report one ("cuda:0"), and the copy lives either on that device or in host memory.
            copy_on_device = self._exact is not None and self._exact.device.type == self.device.type
            plan = plan_placement(new_capacity, self.dimension, self.dtype, self._budget, copy_on_device)
            if not plan.matrix_on_device:
                self._fall_back_to_cpu(plan.note)
            elif copy_on_device and not plan.copy_on_device:
                self._move_copy_to_host(plan.note)
        try:
            self._grow(new_capacity)
        except torch.OutOfMemoryError:
            if self._budget is None:
                raise
            release_cached_memory()
            self._fall_back_to_cpu(f"ran out of GPU memory growing to {new_capacity} rows")
            self._grow(new_capacity)

    def _grow(self, capacity: int) -> None:
        size = self._size
        grown = []
        for tensor in self._buffers():  # every new buffer first: a failed allocation leaves all as they were
            fresh = (torch.zeros if tensor.dim() == 1 else torch.empty)(
                (capacity, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device
            )
            fresh[:size] = tensor[:size]
            grown.append(fresh)
        self._matrix, self._norms_sq, self._alive = grown[:3]
        if self._exact is not None:
            self._exact = grown[3]
        row_ids = np.zeros(capacity, dtype=np.int64)
        row_ids[:size] = self._row_ids[:size]
        self._row_ids = row_ids

    def _fall_back_to_cpu(self, note: str) -> None:
        """Serve from float32 in host memory from now on (it never moves back: no flapping)."""
        rows = self._exact if self._exact is not None else self._matrix
        self._matrix = rows.to(_CPU, torch.float32)
        self._norms_sq, self._alive = self._norms_sq.to(_CPU), self._alive.to(_CPU)
        self._exact = None
        self.device, self.dtype, self._budget = _CPU, torch.float32, None
        self.placement_note = f"on the CPU: {note}"
        release_cached_memory()
        log.warning("an exact index of %d x %d stays on the CPU: %s", self._size, self.dimension, note)

    def _move_copy_to_host(self, note: str) -> None:
        if self._exact is not None:
            self._exact = self._exact.to(_CPU)
        self.placement_note = note
        release_cached_memory()
        log.warning("an exact index of %d x %d keeps its %s", self._size, self.dimension, note)

    def _widen_to_bf16(self, largest: float) -> None:
        """fp16 would store inf: bf16 has fp32's range (and, after the fp32 re-rank, the same results)."""
        log.info("a stored value of %.3g exceeds fp16's range: the index switches to bf16", largest)
        try:
            self._matrix = self._matrix.to(torch.bfloat16)
            self.dtype = torch.bfloat16
        except torch.OutOfMemoryError:
            release_cached_memory()
            self._fall_back_to_cpu("ran out of GPU memory switching to bf16")

    def _compact(self) -> None:
        if self._owner is not None:
            return  # the rows are the owner's: its rebuild drops the dead ones
        keep = self._alive[: self._size]
        keep_np = keep.cpu().numpy()
        live = int(keep_np.sum())
        capacity = max(_MIN_CAPACITY, live * 2)

        def packed(tensor: torch.Tensor) -> torch.Tensor:
            out = torch.zeros((capacity, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
            out[:live] = tensor[: self._size][keep.to(tensor.device)]
            return out

        self._matrix, self._norms_sq = packed(self._matrix), packed(self._norms_sq)
        if self._exact is not None:
            self._exact = packed(self._exact)
        alive = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        alive[:live] = True
        row_ids = np.zeros(capacity, dtype=np.int64)
        row_ids[:live] = self._row_ids[: self._size][keep_np]
        self._alive, self._row_ids = alive, row_ids
        self._size, self._tombstones = live, 0

    # -- search ------------------------------------------------------------------------------

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
