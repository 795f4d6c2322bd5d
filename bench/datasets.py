"""Benchmark data: seeded vectors and texts, and stores built straight through arrwdb's Store (much
faster than posting 100k documents over HTTP), cached between runs."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np

from arrwdb.records import ChunkRecord, DocumentRecord, Upsert
from arrwdb.store.store import Store, new_library_record

DEFAULT_TENANT = "default"  # the tenant of a server without API keys

_WORDS = (
    "river mountain data vector search engine ocean cloud music history science garden market city storm "
    "language memory signal forest planet energy network health travel recipe bridge theory window winter "
    "summer library battery engine protein galaxy harbor village lecture painting camera circuit desert "
    "festival glacier harvest journal kingdom lantern meadow mineral orchard pattern quantum rhythm saddle "
    "telescope uniform volcano whisper yellow zebra anchor balance canvas dragon eclipse fossil gravity"
).split()


def random_vectors(n: int, dimension: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def sentences(n: int, seed: int = 0, words: tuple[int, int] = (8, 14)) -> list[str]:
    """Distinct pseudo-sentences (the index makes each one unique, so no cache can answer them)."""
    rng = random.Random(seed)
    return [f"{' '.join(rng.choices(_WORDS, k=rng.randint(*words)))} {i}" for i in range(n)]


def build_vector_store(
    data_dir: Path,
    name: str,
    vectors: np.ndarray,
    metric: str = "cosine",
    index_type: str = "brute_force",
    index_params: dict[str, int] | None = None,
) -> None:
    """A data dir holding one library with ``vectors`` as documents d0..dN (metadata: group = i % 10).
    An exact library also gets the vector snapshot its server would write at its first start (so a
    benchmark's first server does not spend its measured seconds writing one); an ANN library's caller
    saves both snapshots once it has built the index (save_snapshots)."""
    marker = data_dir / f".complete-{name}"
    if marker.exists():
        return
    if data_dir.exists():
        shutil.rmtree(data_dir)
    store = Store(data_dir / "arrwdb.sqlite3")
    library_id = f"bench-{name}"
    store.create_library(
        new_library_record(library_id, DEFAULT_TENANT, name, vectors.shape[1], index_type, metric, index_params or {})
    )
    for start in range(0, len(vectors), 10_000):
        ops = [
            Upsert(DocumentRecord(f"d{i}", None, None, {"group": i % 10}, None, (ChunkRecord(0, 0, 0, vectors[i]),)))
            for i in range(start, min(start + 10_000, len(vectors)))
        ]
        results = store.commit_writes([(library_id, ops)])
        if isinstance(results[0], Exception):
            raise results[0]
    store.checkpoint()
    store.close()
    if index_type == "brute_force":
        rows = np.arange(1, len(vectors) + 1, dtype=np.int64)  # a new store numbers its rows from 1
        save_snapshots(data_dir, name, rows, vectors, metric, index_type, index_params)
    marker.touch()


def _expected(name: str, dimension: int, metric: str, index_type: str, index_params: dict[str, int] | None) -> dict:
    """What the server checks a snapshot against, for the library build_vector_store made as ``name``."""
    from arrwdb.engine.index_builder import expected_meta_of

    library_id, params = f"bench-{name}", index_params or {}
    return expected_meta_of(new_library_record(library_id, DEFAULT_TENANT, name, dimension, index_type, metric, params))


def save_snapshots(
    data_dir: Path,
    name: str,
    rows: np.ndarray,
    vectors: np.ndarray,
    metric: str,
    index_type: str,
    index_params: dict[str, int] | None = None,
    ann: object | None = None,
) -> None:
    """The snapshots a server that had built ``ann`` (faiss_ops.build over ``rows``; None for an exact
    library) would leave for the library build_vector_store made as ``name``: the index and the vectors."""
    from arrwdb.index import faiss_snapshots, snapshot

    expected = _expected(name, vectors.shape[1], metric, index_type, index_params)
    if ann is not None:
        faiss_snapshots.save(
            ann, rows, {**expected, "trained_rows": len(rows)}, data_dir / "indexes" / f"bench-{name}.ann"
        )
    if metric == "cosine":  # the server adopts these rows as they are: it stores cosine rows normalised
        import torch

        from arrwdb.kernels.topk import normalize_rows

        vectors = normalize_rows(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))).numpy()
    snapshot.save_vectors(data_dir / "indexes" / f"bench-{name}.vectors", rows, vectors, expected)
