"""Rows into an HNSW graph over float32 rows, its links made on a bfloat16 copy of the rows.

Inserting a row is a search of the graph at ``efConstruction`` plus the pruning of its neighbours'
links: distance computations over the stored rows, nearly all of the build's time.  FAISS runs them
~1.4x faster over bfloat16 rows (``IndexHNSWSQ``, half the memory to read) and the links it chooses
serve float32 searches at the recall of links chosen on float32 rows (docs/ANN.md, "Building on
bfloat16 rows").  So the graph's links are made on a temporary bfloat16 copy, then handed to the
float32 graph, whose rows stay the only copy at rest: searches, re-scoring and the exact side read them.

Every graph takes them: inner-product graphs (``cosine`` libraries: unit rows) and L2 graphs (``l2``
libraries, and the one behind an ``ip`` library).  An L2 graph's bfloat16 copy is of its rows minus
their mean: L2 distances do not change with a shift, and bfloat16 keeps 8 bits of each coordinate's
significand (2-3 decimal digits), so rows far from the origin relative to their spread (a large
common offset) would otherwise round to the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from arrwdb.runtime.tuning import ADD_CHUNK

Pace = Callable[[], None]


def float32_rows(storage: Any) -> np.ndarray:
    """A zero-copy [n, d] float32 view of the rows an ``IndexFlat`` stores."""
    import faiss

    n, d = int(storage.ntotal), int(storage.d)
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    return faiss.rev_swig_ptr(storage.codes.data(), n * d * 4).view(np.float32).reshape(n, d)


def _chunks(count: int, pace: Pace | None) -> Iterator[slice]:
    """Slices of ``ADD_CHUNK`` rows over ``count`` rows, ``pace`` called before each (the builder sets its
    thread count there)."""
    for start in range(0, count, ADD_CHUNK):
        if pace is not None:
            pace()
        yield slice(start, start + ADD_CHUNK)


def add_in_chunks(index: Any, vectors: np.ndarray, ids: np.ndarray, pace: Pace | None) -> None:
    """``index.add_with_ids`` in chunks of ``ADD_CHUNK`` rows, ``pace`` called before each."""
    for part in _chunks(len(vectors), pace):
        index.add_with_ids(vectors[part], ids[part])


def add_to_graph(
    index: Any, vectors: np.ndarray, ids: np.ndarray, pace: Pace | None, bfloat16_links: bool | None = None
) -> None:
    """Add ``vectors`` with ``ids`` to ``index``, an ``IndexIDMap2`` over an ``IndexHNSWFlat`` that is
    private to the caller; ``pace`` is called before each chunk of ``ADD_CHUNK`` rows.
    ``bfloat16_links``: whether the links are made on a bfloat16 copy (the default) or on the float32 rows."""
    import faiss

    if len(vectors) == 0:
        return
    graph = faiss.downcast_index(index.index)
    if bfloat16_links is False:
        add_in_chunks(index, vectors, ids, pace)
        return
    storage = faiss.downcast_index(graph.storage)
    stored = float32_rows(storage)
    # L2: the copy is of the rows minus their mean (see the module's doc); inner product: as they are.
    centre = np.zeros(vectors.shape[1], dtype=np.float32)
    if graph.metric_type == faiss.METRIC_L2:
        centre = (stored if len(stored) else vectors).mean(axis=0, dtype=np.float64).astype(np.float32)
    links = faiss.IndexHNSWSQ(
        int(graph.d), faiss.ScalarQuantizer.QT_bf16, int(graph.hnsw.nb_neighbors(1)), graph.metric_type
    )
    links.hnsw = graph.hnsw  # a copy: the graph so far, its parameters and its level generator
    if not links.is_trained:
        links.train(vectors[:1] - centre)
    for start in range(0, len(stored), ADD_CHUNK):  # in chunks: no float32 copy of every stored row
        links.storage.add(stored[start : start + ADD_CHUNK] - centre)
    links.ntotal = links.storage.ntotal
    for part in _chunks(len(vectors), pace):
        links.add(vectors[part] - centre)
    graph.hnsw = links.hnsw
    storage.add(vectors)
    graph.ntotal = storage.ntotal
    known = faiss.vector_to_array(index.id_map).astype(np.int64)
    faiss.copy_array_to_vector(np.concatenate([known, ids]), index.id_map)
    index.ntotal = graph.ntotal
    index.construct_rev_map()
