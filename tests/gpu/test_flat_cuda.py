"""Exact search on CUDA (fp16 storage, fp32 accumulation, fp32 re-rank) against the float32 CPU index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.index.flat import FlatIndex
from arrwdb.runtime.device import GpuBudget
from tests.gpu.conftest import l2_tolerance, same_up_to_ties

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
METRICS = ("cosine", "ip", "l2")


def _dataset(kind: str, n: int = 30_000, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((n, dim), dtype=np.float32), rng.standard_normal((64, dim), dtype=np.float32)
    if kind == "pixels":  # raw 0..255 values: squared norms ~5e7, far past fp16's 65504
        data = rng.integers(0, 256, (n, dim)).astype(np.float32)
        return data, data[rng.choice(n, 64)] + rng.normal(0, 8, (64, dim)).astype(np.float32)
    # "clustered": many near-duplicates, where fp16 rounding alone would reorder the nearest rows
    centres = rng.standard_normal((50, dim), dtype=np.float32)
    data = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, dim), dtype=np.float32) * 1e-3
    return data, centres[:32] + rng.standard_normal((32, dim), dtype=np.float32) * 1e-2


def _pair(data: np.ndarray, metric: str) -> tuple[FlatIndex, FlatIndex]:
    ids = np.arange(7, 7 + len(data))
    gpu, cpu = FlatIndex(data.shape[1], metric, CUDA), FlatIndex(data.shape[1], metric, CPU)
    for index in (gpu, cpu):
        for start in range(0, len(data), 10_000):
            index.add(ids[start : start + 10_000], data[start : start + 10_000])
    return gpu, cpu


@pytest.mark.parametrize("kind", ["normal", "pixels", "clustered"])
@pytest.mark.parametrize("metric", METRICS)
def test_cuda_matches_cpu(kind: str, metric: str) -> None:
    data, queries = _dataset(kind)
    gpu, cpu = _pair(data, metric)
    stats = gpu.statistics()
    assert (stats["device"], stats["dtype"], stats["rerank"]["fp32_copy"]) == ("cuda", "float16", "cuda:0")
    assert stats["gpu_memory_bytes"] > data.nbytes  # fp16 scan + fp32 copy
    tolerances: dict[str, float] = {
        "max_tied": 1.0 if kind == "clustered" else 0.05
    }  # near-duplicates tie in fp32 as well
    if metric == "l2":
        tolerances.update(atol=l2_tolerance(data, queries), tie_atol=l2_tolerance(data, queries))
    for k in (1, 10, 100):
        same_up_to_ties(gpu.search(queries, k), cpu.search(queries, k), **tolerances)
    allowed = np.arange(7, 7 + len(data), 3)
    same_up_to_ties(gpu.search(queries, 10, allowed), cpu.search(queries, 10, allowed), **tolerances)
    deleted = np.arange(8, 7 + len(data), 2)
    gpu.remove(deleted)
    cpu.remove(deleted)
    same_up_to_ties(gpu.search(queries, 10), cpu.search(queries, 10), **tolerances)


@pytest.mark.parametrize("metric", METRICS)
def test_batch_invariance(metric: str) -> None:
    """A query returns the same hits alone as in a batch of 256 (and any other batch)."""
    data, _ = _dataset("normal", n=50_000)
    queries = np.random.default_rng(9).standard_normal((256, 384), dtype=np.float32)
    gpu, _cpu = _pair(data, metric)
    batch_scores, batch_ids = gpu.search(queries, 10)
    for i in range(0, 256, 17):
        alone_scores, alone_ids = gpu.search(queries[i : i + 1], 10)
        np.testing.assert_array_equal(alone_ids[0], batch_ids[i])
        np.testing.assert_allclose(alone_scores[0], batch_scores[i], rtol=1e-5, atol=1e-5)
    _, half_ids = gpu.search(queries[:100], 10)
    np.testing.assert_array_equal(half_ids, batch_ids[:100])


def test_fp32_copy_in_host_memory_when_the_gpu_is_short() -> None:
    data, queries = _dataset("normal", n=20_000)
    scan_bytes = 40_000 * (384 * 2 + 5)  # the largest capacity the index grows to
    budget = GpuBudget(CUDA, 0, lambda: scan_bytes + 1024)  # the scan fits, its fp32 copy does not
    gpu = FlatIndex(384, "cosine", CUDA, budget=budget)
    gpu.add(np.arange(20_000), data)
    cpu = FlatIndex(384, "cosine", CPU)
    cpu.add(np.arange(20_000), data)
    stats = gpu.statistics()
    assert stats["device"] == "cuda" and stats["rerank"]["fp32_copy"] == "cpu" and "host memory" in stats["placement"]
    same_up_to_ties(gpu.search(queries, 10), cpu.search(queries, 10))


def test_library_too_big_for_the_gpu_stays_on_the_cpu() -> None:
    data, queries = _dataset("normal", n=20_000)
    budget = GpuBudget(CUDA, 1 << 30, lambda: 1 << 30)  # nothing fits beside the headroom
    gpu = FlatIndex(384, "l2", CUDA, budget=budget)
    gpu.add(np.arange(20_000), data)
    stats = gpu.statistics()
    assert (stats["device"], stats["dtype"], stats["gpu_memory_bytes"]) == ("cpu", "float32", 0)
    assert "does not fit" in stats["placement"]
    cpu = FlatIndex(384, "l2", CPU)
    cpu.add(np.arange(20_000), data)
    np.testing.assert_array_equal(gpu.search(queries, 10)[1], cpu.search(queries, 10)[1])


def test_values_beyond_fp16_use_bf16_on_cuda() -> None:
    data, queries = _dataset("normal", n=10_000)
    data[3] *= 1e6
    gpu, cpu = _pair(data, "ip")
    assert gpu.statistics()["dtype"] == "bfloat16"
    same_up_to_ties(gpu.search(queries, 10), cpu.search(queries, 10))


def test_rescore_and_copy_rows_on_cuda() -> None:
    data, queries = _dataset("normal", n=5000)
    gpu, cpu = _pair(data, "l2")
    rows, vectors = gpu.copy_rows(after=2000)
    expected_rows, expected = cpu.copy_rows(after=2000)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(vectors, expected)  # the fp32 copy, not fp16-rounded values
    candidates = np.stack([np.arange(7, 57), np.arange(1000, 1050)] * 32)
    np.testing.assert_allclose(gpu.rescore(queries, candidates), cpu.rescore(queries, candidates), rtol=1e-5, atol=1e-3)
