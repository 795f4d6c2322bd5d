"""The peers' shared data: seeded clustered unit vectors, queries from the same clusters, exact top-k.

Clustered rather than uniform: real embeddings have topic structure, and on uniform random vectors in
384-d every HNSW needs a very large ef to pass recall 0.95, which measures the data more than the
systems.  Every system gets the same .npy files; recall is computed here, the same way for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arrwdb.bench.suite import exact_top_k


@dataclass(frozen=True)
class PeerData:
    vectors: np.ndarray  # (rows, dim) float32, unit length
    queries: np.ndarray  # (queries, dim) float32, unit length
    truth: np.ndarray  # (queries, k) int64: row indices of the exact top-k by ``metric``
    clusters: int
    spread: float
    metric: str = "cosine"
    name: str = ""  # a named data set (``from_dataset``); "" for the clustered vectors of ``make_data``

    @property
    def k(self) -> int:
        return int(self.truth.shape[1])


def clustered(n: int, centers: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, len(centers), n)
    noise = rng.standard_normal((n, centers.shape[1]), dtype=np.float32) * (spread / np.sqrt(centers.shape[1]))
    points = centers[labels] + noise
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def make_data(
    rows: int, queries: int, dimension: int = 384, clusters: int = 500, spread: float = 0.7, k: int = 10, seed: int = 7
) -> PeerData:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dimension), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vectors = clustered(rows, centers, spread, rng)
    query_vectors = clustered(queries, centers, spread, rng)
    return PeerData(vectors, query_vectors, exact_top_k(vectors, query_vectors, k).astype(np.int64), clusters, spread)


def from_dataset(name: str, rows: int, queries: int, k: int = 10) -> PeerData:
    """A named data set of ``arrwdb bench indexed`` (``fashion-mnist``: 784-d, L2; ``minilm-bible``: real
    MiniLM vectors of KJV passages, WEB verses as queries, cosine; ``minilm-like``:
    384-d clustered unit vectors, cosine), with its exact top-k by its metric."""
    from arrwdb.bench.indexed import exact_truth, load_dataset

    data = load_dataset(name, rows, queries)
    return PeerData(data.base, data.queries, exact_truth(data, k), 0, 0.0, data.metric, data.name)


def save(data: PeerData, folder: Path) -> dict[str, Path]:
    """The .npy files a driver in another venv reads."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"vectors": folder / "vectors.npy", "queries": folder / "queries.npy"}
    np.save(paths["vectors"], data.vectors)
    np.save(paths["queries"], data.queries)
    return paths


def recall(found: list[list[int]] | np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k found (ids are row indices; -1 or missing slots count as misses)."""
    k = truth.shape[1]
    hits = sum(len({int(x) for x in f[:k]} & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))
