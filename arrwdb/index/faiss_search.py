"""Searching a published FAISS index (IVF, HNSW, a MIPS graph): ID selectors over a bitmap, the FAISS
thread count of one call, scores with higher = closer, and the GPU copy it may be served from.

Searches run on the device worker, on an index that is never mutated again once published: FAISS
indexes are not safe to add to and search at once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from arrwdb.index.faiss_memory import memory_bytes
from arrwdb.index.faiss_ops import MipsGraph, faiss_module
from arrwdb.runtime.tuning import search_threads


@dataclass
class Selector:
    """A FAISS ID selector with the bitmap it points into (which must outlive it)."""

    selector: Any
    bitmap: np.ndarray


def bitmap_selector(allowed: np.ndarray, upto: int) -> Selector:
    """Select exactly the row ids in ``allowed`` (sorted, int64) among ids 0..upto."""
    faiss = faiss_module()
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
    faiss = faiss_module()
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
    faiss = faiss_module()
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
    if ids.size and ids.min() < 0:  # an empty slot scores -inf
        scores = np.where(ids >= 0, scores, -np.inf)
    return scores.astype(np.float32, copy=False), ids


@functools.lru_cache(maxsize=64)
def _hnsw_params(ef_search: int) -> Any:
    """Search parameters without a selector, made once per efSearch (FAISS reads them, never writes):
    constructing them through SWIG is a tenth of a lone query's time at efSearch 64."""
    return faiss_module().SearchParametersHNSW(efSearch=ef_search)


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
