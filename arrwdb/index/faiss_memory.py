"""The memory a FAISS index holds, for the statistics and GPU placement: an HNSW graph counted from its
parts, other indexes by their serialised size (or an estimate for large ones)."""

from __future__ import annotations

from typing import Any

from arrwdb.index.faiss_ops import MipsGraph, faiss_module


def memory_bytes(index: Any) -> int:
    faiss = faiss_module()
    index = index.index if isinstance(index, MipsGraph) else index
    if isinstance(index, faiss.IndexIDMap2) and isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
        return _hnsw_bytes(index)
    try:
        return int(faiss.serialize_index(index).nbytes) if index.ntotal < 200_000 else _estimate(index)
    except RuntimeError:
        return _estimate(index)


# An IndexIDMap2's reverse map (std::unordered_map<int64, int64>): a node of two keys and a next pointer,
# and a bucket pointer, per row.
_REV_MAP_BYTES_PER_ROW = 40


def _hnsw_bytes(index: Any) -> int:
    """Bytes of an IDMap2-wrapped HNSW graph, from its parts (no serialised copy of it is made): the
    stored rows, the neighbour lists, levels and offsets, and the id maps."""
    faiss = faiss_module()
    inner = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(inner.storage)
    hnsw = inner.hnsw
    graph = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
    rows = int(index.ntotal)
    return int(storage.ntotal * storage.code_size + graph + rows * (8 + _REV_MAP_BYTES_PER_ROW))


def _estimate(index: Any) -> int:
    return int(index.ntotal * index.d * 4 * 1.5)
