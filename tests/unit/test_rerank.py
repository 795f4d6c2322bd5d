"""The fp32 re-rank of half-precision storage, on the CPU: a FlatIndex forced to fp16 runs the CUDA
path's logic (the kernel widens half blocks to fp32 on a CPU, with the same rounding of the stored
rows and the queries), so it must return what the float32 reference returns, up to exact ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.index import rerank
from arrwdb.index.flat import FlatIndex
from arrwdb.kernels import normalize_rows, search_exact

CPU = torch.device("cpu")
METRICS = ("cosine", "ip", "l2")


def _pair(vectors: np.ndarray, metric: str, ids: np.ndarray | None = None) -> tuple[FlatIndex, FlatIndex]:
    ids = np.arange(len(vectors)) if ids is None else ids
    half = FlatIndex(vectors.shape[1], metric, CPU, torch.float16)
    reference = FlatIndex(vectors.shape[1], metric, CPU)
    for index in (half, reference):
        for start in range(0, len(vectors), 3000):  # several adds: growth keeps the fp32 copy in step
            index.add(ids[start : start + 3000], vectors[start : start + 3000])
    return half, reference


def _assert_same_up_to_ties(
    half: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray], max_tied: float = 0.05
) -> None:
    (scores, ids), (ref_scores, ref_ids) = half, reference
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    differ = ids != ref_ids
    # Where ids differ, both sides hold equal scores (within two float32 steps at their size: the two
    # paths sum in different orders): tied rows in another order.
    np.testing.assert_allclose(scores[differ], ref_scores[differ], rtol=2.5e-7, atol=1e-6)
    assert differ.mean() <= max_tied


@pytest.mark.parametrize("metric", METRICS)
def test_half_storage_returns_the_fp32_results(metric: str) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((12_000, 48), dtype=np.float32)
    queries = rng.standard_normal((40, 48), dtype=np.float32)
    half, reference = _pair(vectors, metric)
    for k in (1, 10, 100):
        _assert_same_up_to_ties(half.search(queries, k), reference.search(queries, k))
    deleted = np.arange(0, 12_000, 3)
    half.remove(deleted)
    reference.remove(deleted)
    allowed = np.arange(1, 12_000, 2)
    _assert_same_up_to_ties(half.search(queries, 10), reference.search(queries, 10))
    _assert_same_up_to_ties(half.search(queries, 10, allowed), reference.search(queries, 10, allowed))
    assert half.statistics()["rerank"]["fp32_copy"] == "cpu"


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_rerank_fixes_what_fp16_rounding_misorders(metric: str) -> None:
    """3000 rows closer together than fp16 can tell apart: the raw fp16 scan ranks them almost at
    random; the re-ranked index must widen its fetch until the order is the exact one."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal(64).astype(np.float32)
    base /= np.linalg.norm(base)
    cluster = base + rng.standard_normal((3000, 64)).astype(np.float32) * 3e-4
    vectors = np.vstack([cluster, rng.standard_normal((9000, 64)).astype(np.float32)])
    queries = base + rng.standard_normal((6, 64)).astype(np.float32) * 1e-2
    half, reference = _pair(vectors, metric)
    expected = reference.search(queries, 10)
    _assert_same_up_to_ties(half.search(queries, 10), expected, max_tied=1.0)  # fp32 ties abound here
    assert half.statistics()["rerank"]["widened_queries"] > 0

    stored = normalize_rows(torch.from_numpy(vectors)) if metric == "cosine" else torch.from_numpy(vectors)
    query = normalize_rows(torch.from_numpy(queries)) if metric == "cosine" else torch.from_numpy(queries)
    _, raw_ids = search_exact(stored.half(), query, 10, "ip" if metric == "cosine" else metric)
    assert (raw_ids.numpy() != expected[1]).mean() > 0.3  # fp16 alone really does get it wrong


def test_error_bound_covers_the_half_precision_error() -> None:
    rng = np.random.default_rng(3)
    for metric, scale in (("ip", 1.0), ("l2", 30.0), ("ip", 1e-6)):  # 1e-6: fp16 subnormals
        rows = torch.from_numpy(rng.standard_normal((2000, 256), dtype=np.float32) * scale)
        queries = torch.from_numpy(rng.standard_normal((16, 256), dtype=np.float32) * scale)
        approx, ids = search_exact(rows.half(), queries, 2000, metric)
        exact, exact_ids = search_exact(rows, queries, 2000, metric)
        order = torch.argsort(ids, dim=1)
        exact_order = torch.argsort(exact_ids, dim=1)
        error = (approx.gather(1, order) - exact.gather(1, exact_order)).abs().amax(dim=1)
        max_norm = float(torch.linalg.vector_norm(rows, dim=1).max())
        bound = rerank.error_bound(torch.linalg.vector_norm(queries, dim=1), max_norm, 256, torch.float16, metric)
        assert (error <= bound).all(), (metric, scale, error.max().item(), bound.min().item())


def test_fetch_sizes() -> None:
    assert rerank.first_fetch(10, 1_000_000) == 40
    assert rerank.first_fetch(1, 1_000_000) == rerank.MIN_FETCH
    assert rerank.first_fetch(10, 5) == 10  # never below k: the kernel pads missing slots
    assert rerank.next_fetch(40, 10, 1_000_000) == 160
    assert rerank.next_fetch(4096, 10, 1_000_000) == 4096  # capped: no more widening
    assert rerank.next_fetch(4000, 1000, 1_000_000) == 4096
    assert rerank.next_fetch(4096, 1000, 1_000_000) == 4096
    assert rerank.next_fetch(40, 10, 100) == 100


def test_small_and_empty_indexes() -> None:
    half = FlatIndex(8, "ip", CPU, torch.float16)
    scores, ids = half.search(np.ones((2, 8), dtype=np.float32), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()
    half.add(np.array([4, 9]), np.eye(8, dtype=np.float32)[:2])
    scores, ids = half.search(np.ones((1, 8), dtype=np.float32), 3)
    assert set(ids[0, :2]) == {4, 9} and ids[0, 2] == -1 and np.isneginf(scores[0, 2])


def test_huge_queries_are_searched_in_fp32() -> None:
    """A query value beyond 65504 would be inf in fp16: such queries scan the fp32 copy instead."""
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((3000, 16), dtype=np.float32)
    queries = rng.standard_normal((4, 16), dtype=np.float32)
    queries[1] *= 1e6
    half, reference = _pair(vectors, "l2")
    scores, ids = half.search(queries, 5)
    assert np.isfinite(scores).all()
    _assert_same_up_to_ties((scores, ids), reference.search(queries, 5))


def test_rescore_and_copy_rows_read_the_fp32_copy() -> None:
    rng = np.random.default_rng(5)
    vectors = (rng.standard_normal((500, 8)) * 1.0001).astype(np.float32)
    half, reference = _pair(vectors, "ip", ids=np.arange(100, 600))
    rows, copied = half.copy_rows(after=349)
    np.testing.assert_array_equal(rows, np.arange(350, 600))
    np.testing.assert_array_equal(copied, vectors[250:])  # fp32 values, not fp16-rounded ones
    queries = rng.standard_normal((3, 8), dtype=np.float32)
    candidates = np.array([[100, 101, -1], [599, 7, 350], [200, 200, 201]])
    np.testing.assert_array_equal(half.rescore(queries, candidates), reference.rescore(queries, candidates))


@pytest.mark.parametrize("metric", METRICS)
def test_the_scripted_half_search_equals_the_same_function_run_eagerly(metric: str) -> None:
    """One TorchScript call on the device worker (kernels/script.py): the same results as the Python
    function it compiles, through widening, a mask, and a query too large for fp16 (scanned in fp32)."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(32).astype(np.float32)
    vectors = np.vstack(
        [
            base + rng.standard_normal((2000, 32)).astype(np.float32) * 1e-3,
            rng.standard_normal((4000, 32)).astype(np.float32),
        ]
    )
    queries = np.vstack(
        [
            base + rng.standard_normal((5, 32)).astype(np.float32) * 1e-2,
            rng.standard_normal((1, 32)).astype(np.float32) * 1e5,
        ]
    )  # beyond fp16: 65504
    exact = torch.from_numpy(vectors)
    matrix, query = exact.half(), torch.from_numpy(queries)
    l2 = metric == "l2"
    norms_sq = exact.pow(2).sum(dim=1) if l2 else None
    mask = torch.from_numpy(rng.random(6000) < 0.7)
    max_norm, u = float(exact.norm(dim=1).max()), rerank.unit_roundoff(torch.float16)
    args = (
        matrix,
        exact,
        query,
        10,
        l2,
        mask,
        norms_sq,
        metric == "cosine",
        max_norm,
        u,
        rerank.SAFETY,
        65504.0,
        rerank.fetch_schedule(10, 6000),
        1024,
        1024,
        16,
        rerank.GATHER_BYTES,
    )
    scripted_scores, scripted_ids, scripted_widened = rerank.SEARCH_HALF.compiled(*args)
    eager_scores, eager_ids, eager_widened = rerank.SEARCH_HALF.fn(*args)
    assert torch.equal(scripted_ids, eager_ids) and scripted_widened == eager_widened > 0
    torch.testing.assert_close(scripted_scores, eager_scores)
    assert bool(mask[eager_ids[eager_ids >= 0]].all())  # never a masked row
