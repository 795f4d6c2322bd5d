"""An out-of-memory error during a batch splits the batch and retries, on the CPU with fakes that raise
torch.OutOfMemoryError for batches above a size: the search runner, the embedding forward, the helper."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from arrwdb.embed.minilm import MiniLMEmbedder, TokenBatch
from arrwdb.embed.st_config import SentenceSpec
from arrwdb.engine.search_batch import SearchItem, run_search_batch
from arrwdb.index.flat import FlatIndex
from arrwdb.library.inputs import SearchInput
from arrwdb.runtime.device import split_on_oom


def _fails_above(limit: int, calls: list[int]) -> Any:
    def run(start: int, stop: int) -> list[int]:
        calls.append(stop - start)
        if stop - start > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return list(range(start, stop))

    return run


def test_split_on_oom_halves_until_it_fits() -> None:
    calls: list[int] = []
    result = split_on_oom(_fails_above(10, calls), 37, lambda parts: [x for p in parts for x in p])
    assert result == list(range(37))
    assert calls[:3] == [37, 18, 9] and max(c for c in calls if c <= 10) <= 10


def test_split_on_oom_gives_up_on_one_item() -> None:
    with pytest.raises(torch.OutOfMemoryError):
        split_on_oom(_fails_above(0, []), 4, lambda parts: parts)


def test_split_on_oom_passes_other_errors_through() -> None:
    def broken(start: int, stop: int) -> None:
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError):
        split_on_oom(broken, 8, lambda parts: parts)


class _FussyLibrary:
    """A library whose searches fail with an out-of-memory error above ``limit`` queries."""

    documents_loaded = False  # its hits come from the fake store below

    def __init__(self, index: FlatIndex, limit: int) -> None:
        self.index = index
        self.limit = limit
        self.batch_sizes: list[int] = []

    def search(self, queries: np.ndarray, k: int, filter_: Any, filter_key: str, params: dict[str, Any]) -> Any:
        self.batch_sizes.append(len(queries))
        if len(queries) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.index.search(queries, k)


class _Store:
    def hit_rows(self, row_ids: list[int], include_text: bool) -> dict[int, Any]:
        return {i: SimpleNamespace(doc_id=f"d{i}", chunk_index=0, title=None, text=None, metadata={}) for i in row_ids}


def test_search_runner_splits_a_batch_that_runs_out_of_memory() -> None:
    rng = np.random.default_rng(0)
    index = FlatIndex(16, "cosine", torch.device("cpu"))
    index.add(np.arange(500), rng.standard_normal((500, 16), dtype=np.float32))
    queries = rng.standard_normal((50, 16), dtype=np.float32)
    items = [SearchItem("lib", q[None], SearchInput(None, q, k=5 + i % 3)) for i, q in enumerate(queries)]
    fussy = _FussyLibrary(index, limit=8)
    results = run_search_batch({"lib": fussy}, _Store(), items).hits()  # type: ignore[dict-item, arg-type]
    expected_scores, expected_ids = index.search(queries, 7)
    for i, result in enumerate(results):
        assert not isinstance(result, Exception)
        (hits,) = result
        k = 5 + i % 3
        assert [h.document_id for h in hits] == [f"d{r}" for r in expected_ids[i, :k]]
        np.testing.assert_allclose([h.score for h in hits], expected_scores[i, :k], rtol=1e-6)
    assert fussy.batch_sizes[0] == 50 and max(s for s in fussy.batch_sizes if s <= 8) <= 8


class _FussyModel:
    """Stands in for the model's forward (LeanBert): hidden states from the ids, OOM above ``limit`` texts."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        self.sizes.append(len(input_ids))
        if len(input_ids) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.stack([input_ids.float(), input_ids.float().sin(), input_ids.float().cos()], dim=-1)


def _embedder(model: _FussyModel) -> MiniLMEmbedder:
    # The real class around a fake model: only what embed_prepared reads is set.
    embedder = object.__new__(MiniLMEmbedder)
    embedder.device = torch.device("cpu")
    embedder.dimension = 3
    embedder.spec = SentenceSpec(window=256, pooling="mean", normalize=True)  # MiniLM's
    embedder._lean = model  # type: ignore[assignment]
    return embedder


def test_embedding_forward_splits_a_batch_that_runs_out_of_memory() -> None:
    rng = np.random.default_rng(1)
    groups = []
    for size, width in ((64, 12), (30, 7)):
        ids = torch.from_numpy(rng.integers(1, 1000, (size, width)))
        mask = torch.ones_like(ids)
        mask[::3, -2:] = 0
        groups.append((ids * mask, mask, True))
    order = rng.permutation(94)
    batch = TokenBatch(94, order, groups)
    expected = _embedder(_FussyModel(limit=1000)).embed_prepared(batch)
    fussy = _FussyModel(limit=10)
    np.testing.assert_allclose(_embedder(fussy).embed_prepared(batch), expected, rtol=1e-6)
    assert fussy.sizes[0] == 64 and max(s for s in fussy.sizes if s <= 10) <= 10
