"""Serving a published ANN index from a GPU: IVF through a FAISS GPU clone, HNSW through a cuVS CAGRA
graph where the FAISS build has cuVS; otherwise (a CPU build of FAISS, no cuVS, an index the GPU code
cannot take, not enough GPU memory) the CPU index serves, and ``Served.note`` says why.

The published CPU index stays the original: snapshots save it, extensions copy it, and it answers any
search the GPU copy cannot (a k beyond the GPU kernels' limit, an error).  The GPU copy is made, and
searched, on the device worker only: FAISS GPU objects are not thread-safe.  Searches that exclude ids
(tombstones, filters) fetch more from the GPU copy and drop the excluded ids on the host, because ID
selectors are not supported by every FAISS GPU index; a query left with fewer than k hits is answered
exactly by the caller (AnnIndex.search).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("arrwdb.index.faiss_gpu")

TEMP_MEMORY_BYTES = 256 << 20  # per GPU index; FAISS would otherwise reserve ~18% of the card for each
IVF_MAX_K = 2048  # FAISS GPU's largest k for IVF (GPU_MAX_SELECTION_K)
CAGRA_MAX_K = 1024
CAGRA_GRAPH_DEGREE = 64


@dataclass(frozen=True)
class GpuSupport:
    gpus: int
    cuvs: bool
    note: str  # why FAISS does not use a GPU here ("" when it can)


@functools.cache
def gpu_support() -> GpuSupport:
    """What the installed FAISS can do on a GPU.  Probed once a process: it is a property of the
    installed wheel (faiss-cpu, faiss-gpu-cu12, faiss-gpu-cu13-cuvs) and the machine, not of settings."""
    try:
        import faiss
    except Exception as exc:  # ImportError, or a GPU build whose CUDA/cuVS libraries cannot be loaded
        return GpuSupport(0, False, f"FAISS could not be loaded: {exc}")
    if not hasattr(faiss, "StandardGpuResources"):
        return GpuSupport(0, False, "the installed FAISS is a CPU build (install the gpu extra for FAISS GPU)")
    try:
        gpus = int(faiss.get_num_gpus())
    except RuntimeError as exc:
        return GpuSupport(0, False, f"FAISS GPU could not start: {exc}")
    if gpus == 0:
        return GpuSupport(0, False, "FAISS GPU sees no GPU")
    return GpuSupport(gpus, hasattr(faiss, "GpuIndexCagra"), "")


@dataclass
class Served:
    """What an AnnIndex searches: ``cpu`` (the published FAISS index) or its GPU copy ``gpu``."""

    cpu: Any
    backend: str  # "faiss-gpu-ivf", "cagra", "faiss-cpu-ivf", "faiss-cpu-hnsw"
    note: str = ""  # why a GPU was asked for and is not used
    gpu: Any = None
    resources: Any = None  # the StandardGpuResources ``gpu`` runs on: must live as long as it
    row_ids: np.ndarray | None = None  # CAGRA answers positions: the row id at each
    radius_sq: float = 1.0  # CAGRA searches L2: an inner product is (|q|^2 + radius^2 - distance) / 2
    augmented: bool = False  # a MIPS graph's rows carry one extra coordinate (faiss_ops.MipsGraph)
    gpu_bytes: int = 0


def on_cpu(index: Any, index_type: str, note: str = "") -> Served:
    return Served(index, f"faiss-cpu-{index_type}", note)


def serve(
    index: Any,
    inner: Any,
    index_type: str,
    metric: str,
    gpu: int,
    fits: Any,
    ivf_bytes: int,
    mips_radius: float | None,
) -> Served:
    """Serve ``index`` from GPU ``gpu`` when FAISS can; ``inner`` is the FAISS object inside it (a MIPS
    graph's index), ``fits(nbytes)`` says whether an allocation fits, ``ivf_bytes`` sizes an IVF copy."""
    support = gpu_support()
    if support.gpus == 0:
        return on_cpu(index, index_type, support.note)
    if index_type == "hnsw" and not support.cuvs:
        return on_cpu(index, index_type, "this FAISS build has no cuVS (CAGRA): HNSW is searched on the CPU")
    try:
        if index_type == "ivf":
            if not fits(ivf_bytes):
                return on_cpu(index, index_type, f"the IVF index ({ivf_bytes >> 20} MiB) does not fit on the GPU")
            served = _ivf_to_gpu(index, gpu, ivf_bytes)
        else:
            served = _cagra_from_hnsw(index, inner, gpu, fits, metric, mips_radius)
    except (RuntimeError, AttributeError, TypeError) as exc:  # FAISS GPU errors surface as RuntimeError
        log.warning("FAISS GPU cannot serve this %s index, the CPU serves it: %s", index_type, exc)
        return on_cpu(index, index_type, f"FAISS GPU failed: {exc}")
    log.info("%s index of %d vectors served from GPU %d as %s", index_type, inner.ntotal, gpu, served.backend)
    return served


def _resources(faiss: Any) -> Any:
    resources = faiss.StandardGpuResources()
    resources.setTempMemory(TEMP_MEMORY_BYTES)
    return resources


def _ivf_to_gpu(index: Any, gpu: int, ivf_bytes: int) -> Served:
    import faiss

    resources = _resources(faiss)
    options = faiss.GpuClonerOptions()
    options.useFloat16 = False  # lists keep full precision: IVF is approximate enough already
    try:
        clone = faiss.index_cpu_to_gpu(resources, gpu, index, options)
    except RuntimeError:
        if not getattr(options, "use_cuvs", False):
            raise
        # cuVS's IVF takes fewer encodings than FAISS's own GPU IVF: fall back to the latter.
        options.use_cuvs = False
        clone = faiss.index_cpu_to_gpu(resources, gpu, index, options)
    return Served(index, "faiss-gpu-ivf", gpu=clone, resources=resources, gpu_bytes=ivf_bytes)


def _cagra_from_hnsw(index: Any, inner: Any, gpu: int, fits: Any, metric: str, mips_radius: float | None) -> Served:
    """A CAGRA graph over the HNSW index's own vectors (an IndexIDMap2 around IndexHNSWFlat), always in
    L2: cosine rows are normalised and MIPS rows augmented (faiss_ops.MipsGraph), so the L2 order is
    the score order either way."""
    import faiss

    graph = faiss.downcast_index(inner.index)
    count, dimension = int(graph.ntotal), int(graph.d)
    needed = count * (dimension * 4 + CAGRA_GRAPH_DEGREE * 4) * 2  # dataset + graph, x2 while building
    if not fits(needed):
        return on_cpu(index, "hnsw", f"a CAGRA graph ({needed >> 20} MiB) does not fit on the GPU")
    vectors = np.ascontiguousarray(graph.reconstruct_n(0, count), dtype=np.float32)
    row_ids = faiss.vector_to_array(inner.id_map).astype(np.int64)
    resources = _resources(faiss)
    config = faiss.GpuIndexCagraConfig()
    config.graph_degree = CAGRA_GRAPH_DEGREE
    config.intermediate_graph_degree = 2 * CAGRA_GRAPH_DEGREE
    config.device = gpu
    cagra = faiss.GpuIndexCagra(resources, dimension, faiss.METRIC_L2, config)
    cagra.train(vectors)  # CAGRA builds its graph in train()
    radius_sq = mips_radius**2 if mips_radius is not None else 1.0
    return Served(
        index,
        "cagra",
        gpu=cagra,
        resources=resources,
        row_ids=row_ids,
        radius_sq=radius_sq,
        augmented=mips_radius is not None,
        gpu_bytes=needed // 2,
    )


class GpuCannotServe(Exception):
    """This search is beyond the GPU copy (a k past its limit): the CPU index answers it."""


def search(
    served: Served,
    metric: str,
    queries: np.ndarray,
    k: int,
    *,
    ef_search: int | None,
    nprobe: int | None,
    bitmap: np.ndarray | None,
    allowed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) from the GPU copy, higher = closer; ``bitmap`` (little-endian bits by row id) marks
    the ids a search may return, ``allowed`` how many it marks."""
    import faiss

    limit = CAGRA_MAX_K if served.backend == "cagra" else IVF_MAX_K
    ntotal = int(served.gpu.ntotal)
    if k > limit:
        raise GpuCannotServe(f"k={k} is beyond the GPU index's limit of {limit}")
    fetch = k
    if bitmap is not None:
        # Excluded ids are dropped afterwards: fetch enough that k allowed ones are very likely among
        # them (k plus four standard deviations of a binomial draw, over the share allowed).
        share = min(max(allowed, 1) / max(ntotal, 1), 1.0)
        fetch = min(limit, ntotal, max(k, math.ceil((k + 4 * math.sqrt(k) + 4) / share)))
    fetch = max(fetch, 1)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if served.backend == "cagra":
        search_queries = queries
        if served.augmented:
            search_queries = np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]))
        params = faiss.SearchParametersCagra()
        params.itopk_size = max(ef_search or 64, fetch)
        if served.row_ids is None:
            raise GpuCannotServe("a CAGRA copy without its row ids")
        distances, positions = served.gpu.search(search_queries, fetch, params=params)
        ids = np.where(positions >= 0, served.row_ids[np.maximum(positions, 0)], -1)
        if metric == "l2":
            scores = -distances
        else:
            norms_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
            scores = (norms_sq + served.radius_sq - distances) / 2
    else:
        params = faiss.SearchParametersIVF(nprobe=nprobe or 1)
        distances, ids = served.gpu.search(queries, fetch, params=params)
        scores = -distances if metric == "l2" else distances
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    if bitmap is not None:
        scores, ids = _keep_allowed(scores, ids, bitmap)
    return scores[:, :k], ids[:, :k]


def count_bits(bitmap: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return int(np.bitwise_count(bitmap).sum())
    return int(np.unpackbits(bitmap).sum())


def _keep_allowed(scores: np.ndarray, ids: np.ndarray, bitmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the ids whose bit is clear (or past the bitmap), keeping the order of what remains."""
    safe = np.maximum(ids, 0)
    byte = safe >> 3
    inside = (ids >= 0) & (byte < len(bitmap))
    bits = (bitmap[np.minimum(byte, len(bitmap) - 1)] >> (safe & 7).astype(np.uint8)) & 1
    keep = inside & (bits == 1)
    scores = np.where(keep, scores, -np.inf)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept slots first, in their rank order
    scores = np.take_along_axis(scores, order, 1)
    ids = np.where(np.isfinite(scores), np.take_along_axis(ids, order, 1), -1)
    return scores.astype(np.float32), ids


def statistics(served: Served | None) -> dict[str, Any]:
    if served is None:
        return {"backend": "exact (until the ANN index is built)"}
    stats: dict[str, Any] = {"backend": served.backend, "ann_gpu_memory_bytes": served.gpu_bytes}
    if served.note:
        stats["backend_note"] = served.note
    return stats
