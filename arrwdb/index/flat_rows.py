"""The rows of an exact index, on its device: growable buffers (the matrix, squared norms, live flags,
a half-precision index's fp32 copy, row ids), adds, deletes and compaction, and where the buffers live.

Rows are appended in row-id order (the store hands out increasing ids and the engine applies commits
in order), so a row id maps to its position by binary search and no per-row dictionary is needed.
Deletes are tombstones in a mask that the kernel applies before top-k; the matrix is compacted once
tombstones pass half of it.

Storage follows the device (``arrwdb.runtime.device.storage_dtype``): float32 on a CPU; fp16 on CUDA (bf16 once
a stored value exceeds fp16's range).  A half-precision index keeps an fp32 copy of its rows for the
re-rank (``flat.py``, ``rerank.py``).  The copy stays on the GPU while it fits there and moves to host
memory when it does not, so the fp16 matrix that every query scans keeps its place.  When even that
matrix does not fit, the whole index falls back to float32 on the CPU, with a log line and a
statistic; it never crashes on GPU memory.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from arrwdb.kernels import normalize_rows
from arrwdb.runtime.device import FP16_MAX, GpuBudget, plan_placement, release_cached_memory, storage_dtype

log = logging.getLogger("arrwdb.index.flat")  # the exact index's log lines, wherever in it they arise

_MIN_CAPACITY = 1024
_COMPACT_MIN_TOMBSTONES = 4096
_CPU = torch.device("cpu")


class FlatRows:
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

    def __len__(self) -> int:
        return self._size - self._tombstones

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
