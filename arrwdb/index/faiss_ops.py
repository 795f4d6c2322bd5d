"""FAISS index construction, search and persistence for the ANN index types (IVF and HNSW).

Every function here runs either on the builder thread (build, extend, save, load) on an index object
nobody else can see yet, or on the device worker (search) on an index that is never mutated again
once published: FAISS indexes are not safe to add to and search at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arrwdb.index import snapshot
from arrwdb.index.params import HNSWParams, IVFParams
from arrwdb.index.snapshot import SnapshotError
from arrwdb.runtime.tuning import ADD_CHUNK, search_threads

__all__ = ["SnapshotError"]

_TRAIN_POINTS_PER_LIST = 64


def _faiss() -> Any:
    import faiss

    return faiss


def faiss_metric(metric: str) -> int:
    faiss = _faiss()
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


def _add(index: Any, vectors: np.ndarray, ids: np.ndarray, pace: Pace | None) -> None:
    for start in range(0, len(vectors), ADD_CHUNK):
        if pace is not None:
            pace()
        index.add_with_ids(vectors[start : start + ADD_CHUNK], ids[start : start + ADD_CHUNK])


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
    faiss = _faiss()
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
            _add(index, vectors, ids, pace)
            return index
        # The smallest bound keeps distances discriminative; a longer new row forces a rebuild.
        wrapped = MipsGraph(index, float(np.linalg.norm(all_vectors, axis=1).max()) * 1.0001 + 1e-6)
        _add(index, wrapped.augment(vectors), ids, pace)
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
    _add(index, vectors, ids, pace)
    return index


def extend(index: Any, row_ids: np.ndarray, vectors: np.ndarray, pace: Pace | None = None) -> Any:
    """A copy of ``index`` with more vectors; the published index stays untouched."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(row_ids, dtype=np.int64)
    if isinstance(index, MipsGraph):
        grown = MipsGraph(faiss.clone_index(index.index), index.max_norm)
        _add(grown.index, grown.augment(vectors), ids, pace)
        return grown
    grown = faiss.clone_index(index)
    _add(grown, vectors, ids, pace)
    return grown


def add_rows(index: Any, row_ids: np.ndarray, vectors: np.ndarray, pace: Pace | None = None) -> None:
    """Add rows in place to an index that is still private to the caller (held-out rows, see build)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(row_ids, dtype=np.int64)
    if isinstance(index, MipsGraph):
        _add(index.index, index.augment(vectors), ids, pace)
    else:
        _add(index, vectors, ids, pace)


def sort_by_id(index: Any) -> None:
    """Reorder an HNSW graph (private to the caller) so that it stores its rows in increasing row-id
    order, as ``shared_storage`` needs (held-out rows were added last).  Other indexes: nothing."""
    faiss = _faiss()
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


def _hnsw_flat(index: Any) -> Any:
    """The IndexHNSWFlat inside an ``IndexIDMap2`` that ``build`` made for cosine or L2 (not a MIPS graph:
    it stores augmented rows), else None."""
    faiss = _faiss()
    if isinstance(index, MipsGraph) or not isinstance(index, faiss.IndexIDMap2):
        return None
    inner = faiss.downcast_index(index.index)
    return inner if isinstance(inner, faiss.IndexHNSWFlat) else None


def shared_storage(index: Any) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """(row ids in increasing order, a zero-copy float32 view [n, d] of the rows the graph stores, the
    index that owns them) of a published HNSW graph over plain float32 rows, for the exact side to read in
    place (``split_exact``); None for any other index, or rows not stored in id order."""
    faiss = _faiss()
    inner = _hnsw_flat(index)
    if inner is None:
        return None
    storage = faiss.downcast_index(inner.storage)
    n, d = int(storage.ntotal), int(storage.d)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    if n == 0 or len(ids) != n or not bool(np.all(ids[1:] > ids[:-1])) or storage.code_size != d * 4:
        return None
    raw = faiss.rev_swig_ptr(storage.codes.data(), n * d * 4)
    return ids, raw.view(np.float32).reshape(n, d), index


def can_extend(index: Any, vectors: np.ndarray) -> bool:
    """False when new rows do not fit the index's assumptions (a longer vector than a MIPS graph's
    headroom): the builder then rebuilds instead."""
    return not isinstance(index, MipsGraph) or index.fits(vectors)


@dataclass
class Selector:
    """A FAISS ID selector with the bitmap it points into (which must outlive it)."""

    selector: Any
    bitmap: np.ndarray


def bitmap_selector(allowed: np.ndarray, upto: int) -> Selector:
    """Select exactly the row ids in ``allowed`` (sorted, int64) among ids 0..upto."""
    faiss = _faiss()
    bits = np.zeros(upto + 1, dtype=bool)
    bits[allowed[allowed <= upto]] = True
    bitmap = np.packbits(bits, bitorder="little")
    return Selector(faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bitmap)), bitmap)


def _threaded_search(
    index: Any, queries: np.ndarray, k: int, params: Any, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` on ``threads`` threads (None: ``search_threads``; 0: the calling thread's count,
    as the builder paces it), then the calling thread's count as it was: the count is per thread and
    shared with torch's intra-op threads on the device worker (one runtime)."""
    faiss = _faiss()
    if threads == 0:
        return index.search(queries, k, params=params)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or search_threads(len(queries)))
    try:
        return index.search(queries, k, params=params)
    finally:
        faiss.omp_set_num_threads(before)


def search(
    index: Any,
    index_type: str,
    metric: str,
    queries: np.ndarray,
    k: int,
    *,
    ef_search: int | None,
    nprobe: int | None,
    selector: Selector | None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) with higher = closer: FAISS's L2 distances are negated.  ``threads``: see
    ``_threaded_search``."""
    faiss = _faiss()
    sel = None if selector is None else selector.selector
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if isinstance(index, MipsGraph):
        augmented = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]))
        params = faiss.SearchParametersHNSW(efSearch=max(ef_search or 16, k), sel=sel)
        distances, ids = _threaded_search(index.index, augmented, k, params, threads)
        norms_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
        scores = (norms_sq + index.max_norm**2 - distances) / 2
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids
    if index_type == "hnsw":
        params = (
            _hnsw_params(max(ef_search or 16, k))
            if sel is None
            else faiss.SearchParametersHNSW(efSearch=max(ef_search or 16, k), sel=sel)
        )
    else:
        params = faiss.SearchParametersIVF(nprobe=nprobe or 1, sel=sel)
    distances, ids = _threaded_search(index, queries, k, params, threads)
    scores = -distances if metric == "l2" else distances
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    return scores, ids


@functools.lru_cache(maxsize=64)
def _hnsw_params(ef_search: int) -> Any:
    """Search parameters without a selector, made once per efSearch (FAISS reads them, never writes):
    constructing them through SWIG is a tenth of a lone query's time at efSearch 64."""
    return _faiss().SearchParametersHNSW(efSearch=ef_search)


def ivf_nlist(index: Any) -> int | None:
    faiss = _faiss()
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return None


def memory_bytes(index: Any) -> int:
    faiss = _faiss()
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
    faiss = _faiss()
    inner = faiss.downcast_index(index.index)
    storage = faiss.downcast_index(inner.storage)
    hnsw = inner.hnsw
    graph = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
    rows = int(index.ntotal)
    return int(storage.ntotal * storage.code_size + graph + rows * (8 + _REV_MAP_BYTES_PER_ROW))


def _estimate(index: Any) -> int:
    return int(index.ntotal * index.d * 4 * 1.5)


# -- persistence (through arrwdb.index.snapshot: temp files, fsync, rename, CRC checks) -------------


def save(index: Any, rows: np.ndarray, meta: dict[str, Any], base: Path) -> None:
    faiss = _faiss()
    if isinstance(index, MipsGraph):
        meta = {**meta, "mips_max_norm": index.max_norm}
        index = index.index
    blob = faiss.serialize_index(index)
    snapshot.write(base, {".faiss": memoryview(blob), ".rows": memoryview(np.ascontiguousarray(rows, np.int64))}, meta)


def load(base: Path, expected: dict[str, Any]) -> tuple[Any, np.ndarray, dict[str, Any]]:
    faiss = _faiss()
    # FAISS reads the file while a second thread checks its CRCs: both stream the same pages, so a cold
    # start reads the disk once, and no multi-GB Python copy is made.  The index is used only once the
    # check has passed.  Only the builder thread reads and writes snapshots: no file changes meanwhile.
    snapshot.read_meta(base, expected)  # made for other settings: refused before reading gigabytes
    with ThreadPoolExecutor(1, thread_name_prefix="arrwdb-verify") as pool:
        checked = pool.submit(snapshot.verify, base, expected)
        try:
            index = faiss.read_index(str(snapshot.part(base, ".faiss")))
            rows = np.fromfile(snapshot.part(base, ".rows"), dtype=np.int64)
        except (RuntimeError, OSError) as exc:
            checked.result()  # a damaged file is reported as such
            raise SnapshotError(f"FAISS could not read the snapshot: {exc}") from exc
        meta = checked.result()
    if index.ntotal != len(rows):
        raise SnapshotError("snapshot index and rows disagree")
    if "mips_max_norm" in meta:
        return MipsGraph(index, float(meta["mips_max_norm"])), rows, meta
    return index, rows, meta


def remove_snapshot(base: Path) -> None:
    snapshot.remove(base)


# -- serving from a GPU (the FAISS GPU specifics live in arrwdb.index.faiss_gpu) ----------------------
# AnnIndex publishes a built or loaded index through serve() (on the device worker) and searches what
# it returns through search_served(); the published CPU index itself is what save/extend/ivf_nlist see.


def gpu_support() -> Any:
    """faiss_gpu.GpuSupport: GPUs FAISS can use here, whether it has cuVS, and why not when it cannot."""
    from arrwdb.index import faiss_gpu

    return faiss_gpu.gpu_support()


def serve(index: Any, index_type: str, metric: str, device: Any, fits: Any = None) -> Any:
    """faiss_gpu.Served for a newly published ``index`` on ``device`` (a torch.device): its FAISS GPU
    copy (IVF) or CAGRA graph (HNSW) where FAISS can serve it there, else the CPU index, with a note.
    ``fits(nbytes)`` says whether an allocation fits on the GPU (default: the driver's free memory)."""
    from arrwdb.index import faiss_gpu

    if getattr(device, "type", "cpu") != "cuda":
        return faiss_gpu.on_cpu(index, index_type)
    from arrwdb.runtime.device import GpuBudget

    inner = index.index if isinstance(index, MipsGraph) else index
    radius = index.max_norm if isinstance(index, MipsGraph) else None
    ivf_bytes = memory_bytes(index) if index_type == "ivf" else 0
    fits = fits or GpuBudget.for_device(device).fits
    return faiss_gpu.serve(index, inner, index_type, metric, device.index or 0, fits, ivf_bytes, radius)


def search_served(
    served: Any,
    index_type: str,
    metric: str,
    queries: np.ndarray,
    k: int,
    *,
    ef_search: int | None,
    nprobe: int | None,
    selector: Selector | None,
) -> tuple[np.ndarray, np.ndarray]:
    """search() on what serve() returned: the GPU copy when there is one and it can take this search."""
    from arrwdb.index import faiss_gpu

    if served.gpu is not None:
        bitmap = None if selector is None else selector.bitmap
        allowed = 0 if bitmap is None else faiss_gpu.count_bits(bitmap)
        try:
            return faiss_gpu.search(
                served, metric, queries, k, ef_search=ef_search, nprobe=nprobe, bitmap=bitmap, allowed=allowed
            )
        except faiss_gpu.GpuCannotServe:
            pass
        except RuntimeError as exc:  # a FAISS GPU error: the CPU index answers from now on
            faiss_gpu.log.warning("GPU search failed, the CPU index serves from now on: %s", exc)
            served.gpu, served.resources, served.gpu_bytes = None, None, 0
            served.backend, served.note = f"faiss-cpu-{index_type}", f"GPU search failed: {exc}"
    return search(served.cpu, index_type, metric, queries, k, ef_search=ef_search, nprobe=nprobe, selector=selector)


def served_statistics(served: Any) -> dict[str, Any]:
    """backend (faiss-gpu-ivf, cagra, faiss-cpu-ivf, faiss-cpu-hnsw), why not the GPU, GPU bytes."""
    from arrwdb.index import faiss_gpu

    return faiss_gpu.statistics(served)
