"""FAISS index construction for the ANN index types (IVF and HNSW), and the MIPS graph that serves inner
product from an L2 graph.  Search is ``faiss_search``'s, memory accounting ``faiss_memory``'s and
persistence ``faiss_snapshots``'.

Every function here runs on the builder thread, on an index object nobody else can see yet, or reads
a published one (``shared_storage``, ``ivf_nlist``); the device worker searches a published index,
which is never mutated again: FAISS indexes are not safe to add to and search at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arrwdb.index.graph_insert import add_in_chunks, add_to_graph, float32_rows
from arrwdb.index.params import HNSWParams, IVFParams

_TRAIN_POINTS_PER_LIST = 64


def faiss_module() -> Any:
    import faiss

    return faiss


def faiss_metric(metric: str) -> int:
    faiss = faiss_module()
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


def min_rows_to_build(index_type: str, params: dict[str, Any]) -> int:
    """Below this many vectors a library is served exactly: exact is fast there, and IVF needs
    enough points per list to train (FAISS wants at least 39 per centroid)."""
    if index_type == "ivf":
        nlist = IVFParams.from_dict(params).nlist
        return max(2048, 39 * (nlist or 0))
    return 2048


@dataclass
class MipsGraph:
    """HNSW for inner product on vectors of any norm, through the classic reduction to L2: store
    ``[x, sqrt(M^2 - |x|^2)]`` and search ``[q, 0]``; then ``|q' - x'|^2 = |q|^2 + M^2 - 2 q.x``, so the
    L2 order is the inner-product order.  A proximity graph built directly on inner products (not a
    metric) loses a lot of recall."""

    index: Any
    max_norm: float

    def augment(self, vectors: np.ndarray) -> np.ndarray:
        norms_sq = np.einsum("ij,ij->i", vectors, vectors)
        extra = np.sqrt(np.maximum(self.max_norm**2 - norms_sq, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)

    def fits(self, vectors: np.ndarray) -> bool:
        return bool(len(vectors) == 0 or np.linalg.norm(vectors, axis=1).max() <= self.max_norm)


Pace = Callable[[], None]


def build(
    index_type: str,
    params: dict[str, Any],
    metric: str,
    row_ids: np.ndarray,
    vectors: np.ndarray,
    pace: Pace | None = None,
    held: np.ndarray | None = None,
) -> Any:
    """A new FAISS index of ``vectors``; ``pace`` is called before training and before each chunk of
    adds (the builder sets its thread count there).  ``held`` (a boolean mask) leaves those rows out,
    to be added later with ``add_rows`` (calibration queries them first): a MIPS graph's bound covers
    them already."""
    faiss = faiss_module()
    dimension = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(row_ids, dtype=np.int64)
    all_vectors = vectors
    if held is not None:
        vectors, ids = vectors[~held], ids[~held]
    if index_type == "hnsw":
        p = HNSWParams.from_dict(params, dimension)
        mips = metric == "ip"
        graph = faiss.IndexHNSWFlat(dimension + int(mips), p.m, faiss_metric("l2" if mips else metric))
        graph.hnsw.efConstruction = p.ef_construction
        index = faiss.IndexIDMap2(graph)
        if not mips:
            add_to_graph(index, vectors, ids, pace)
            return index
        # The smallest bound keeps distances discriminative; a longer new row forces a rebuild.
        wrapped = MipsGraph(index, float(np.linalg.norm(all_vectors, axis=1).max()) * 1.0001 + 1e-6)
        add_to_graph(index, wrapped.augment(vectors), ids, pace)
        return wrapped
    p = IVFParams.from_dict(params)
    nlist = min(p.nlist_for(len(vectors)), max(1, len(vectors) // 39))
    quantizer = faiss.IndexFlat(dimension, faiss_metric(metric))
    if p.encoding == "sq8":
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss_metric(metric)
        )
    elif p.encoding == "pq":
        index = faiss.IndexIVFPQ(quantizer, dimension, nlist, dimension // 8, 8, faiss_metric(metric))
    else:
        index = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss_metric(metric))
    rng = np.random.default_rng(0)
    sample_size = min(len(vectors), nlist * _TRAIN_POINTS_PER_LIST)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
    if pace is not None:
        pace()
    index.train(sample)
    add_in_chunks(index, vectors, ids, pace)
    return index


def extend(index: Any, row_ids: np.ndarray, vectors: np.ndarray, pace: Pace | None = None) -> Any:
    """A copy of ``index`` with more vectors; the published index stays untouched."""
    faiss = faiss_module()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(row_ids, dtype=np.int64)
    if isinstance(index, MipsGraph):
        grown = MipsGraph(faiss.clone_index(index.index), index.max_norm)
        add_to_graph(grown.index, grown.augment(vectors), ids, pace)
        return grown
    grown = faiss.clone_index(index)
    if _hnsw_flat(grown) is not None:
        add_to_graph(grown, vectors, ids, pace)
    else:
        add_in_chunks(grown, vectors, ids, pace)
    return grown


def add_rows(index: Any, row_ids: np.ndarray, vectors: np.ndarray, pace: Pace | None = None) -> None:
    """Add rows in place to an index that is still private to the caller (held-out rows, see build)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(row_ids, dtype=np.int64)
    if isinstance(index, MipsGraph):
        add_in_chunks(index.index, index.augment(vectors), ids, pace)
    else:
        add_in_chunks(index, vectors, ids, pace)


def sort_by_id(index: Any) -> None:
    """Reorder an HNSW graph (private to the caller) so that it stores its rows in increasing row-id
    order, as ``shared_storage`` needs (held-out rows were added last).  Other indexes: nothing."""
    faiss = faiss_module()
    inner = _hnsw_flat(index)
    if inner is None:
        return
    ids = faiss.vector_to_array(index.id_map)
    order = np.argsort(ids, kind="stable").astype(np.int64)
    if np.array_equal(order, np.arange(len(ids))):
        return
    inner.permute_entries(order)
    faiss.copy_array_to_vector(np.ascontiguousarray(ids[order]), index.id_map)
    index.construct_rev_map()


def graph_ef_construction(index: Any) -> int | None:
    """The efConstruction an HNSW graph made by ``build`` was built with (FAISS keeps it in the graph and
    its snapshot, and ``extend`` inserts at it), else None."""
    faiss = faiss_module()
    outer = index.index if isinstance(index, MipsGraph) else index
    if not isinstance(outer, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(outer.index)
    return int(inner.hnsw.efConstruction) if isinstance(inner, faiss.IndexHNSW) else None


def _hnsw_flat(index: Any) -> Any:
    """The IndexHNSWFlat inside an ``IndexIDMap2`` that ``build`` made for cosine or L2 (not a MIPS graph:
    it stores augmented rows), else None."""
    faiss = faiss_module()
    if isinstance(index, MipsGraph) or not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    return inner if isinstance(inner, faiss.IndexHNSWFlat) else None


def shared_storage(index: Any) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """(row ids in increasing order, a zero-copy float32 view [n, d] of the rows the graph stores, the
    index that owns them) of a published HNSW graph over plain float32 rows, for the exact side to read in
    place (``split_exact``); None for any other index, or rows not stored in id order."""
    faiss = faiss_module()
    inner = _hnsw_flat(index)
    if inner is None:
        return None
    storage = faiss.downcast_index(inner.storage)
    n, d = int(storage.ntotal), int(storage.d)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if n == 0 or len(ids) != n or not bool(np.all(ids[1:] > ids[:-1])) or storage.code_size != d * 4:
        return None
    return ids, float32_rows(storage), index


def can_extend(index: Any, vectors: np.ndarray) -> bool:
    """False when new rows do not fit the index's assumptions (a longer vector than a MIPS graph's
    headroom): the builder then rebuilds instead."""
    return not isinstance(index, MipsGraph) or index.fits(vectors)


def ivf_nlist(index: Any) -> int | None:
    faiss = faiss_module()
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return None
