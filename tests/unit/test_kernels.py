"""search_exact / normalize_rows against a float64 numpy brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.kernels import normalize_rows, search_exact

METRICS = ["cosine", "ip", "l2"]


def _data(n: int, d: int, q: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = (rng.standard_normal((n, d)) * scale).astype(np.float32)
    queries = (rng.standard_normal((q, d)) * scale).astype(np.float32)
    return matrix, queries


def _prepare(matrix: np.ndarray, queries: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalise both sides for cosine, as the callers of search_exact do."""
    if metric == "cosine":
        matrix = normalize_rows(torch.from_numpy(matrix)).numpy()
        queries = normalize_rows(torch.from_numpy(queries)).numpy()
    return matrix, queries


def _reference(
    matrix: np.ndarray, queries: np.ndarray, k: int, metric: str, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """float64 brute force with the same conventions: higher is closer, -1 / -inf padding."""
    m = matrix.astype(np.float64)
    qs = queries.astype(np.float64)
    if metric == "l2":
        scores = -((qs[:, None, :] - m[None, :, :]) ** 2).sum(-1)
    else:
        scores = qs @ m.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.isinf(top), -1, order)
    if top.shape[1] < k:  # k > n
        pad = k - top.shape[1]
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return top, ids


def _check(scores: torch.Tensor, ids: torch.Tensor, ref_scores: np.ndarray, ref_ids: np.ndarray) -> None:
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert scores.shape == ref_scores.shape and ids.shape == ref_ids.shape
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    finite = np.isfinite(ref_scores)
    assert np.array_equal(np.isfinite(scores.numpy()), finite)
    np.testing.assert_allclose(scores.numpy()[finite], ref_scores[finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_matches_reference(metric: str) -> None:
    matrix, queries = _data(2000, 48, 16, seed=1)
    matrix, queries = _prepare(matrix, queries, metric)
    scores, ids = search_exact(torch.from_numpy(matrix), torch.from_numpy(queries), 10, metric)
    _check(scores, ids, *_reference(matrix, queries, 10, metric))
    # best first, and l2 scores are negative squared distances
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    if metric == "l2":
        assert torch.all(scores <= 0)


@pytest.mark.parametrize("metric", METRICS)
def test_precomputed_norms_match_on_the_fly(metric: str) -> None:
    matrix, queries = _data(500, 32, 8, seed=2)
    matrix, queries = _prepare(matrix, queries, metric)
    m = torch.from_numpy(matrix)
    norms = (m.double() ** 2).sum(1).float()
    scores, ids = search_exact(m, torch.from_numpy(queries), 7, metric, norms_sq=norms, block_rows=64)
    _check(scores, ids, *_reference(matrix, queries, 7, metric))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block_rows", [128, 1000])
def test_sparse_mask(metric: str, block_rows: int) -> None:
    """~10% eligible takes the gather path; results must be the k best eligible rows."""
    matrix, queries = _data(1000, 32, 12, seed=3)
    matrix, queries = _prepare(matrix, queries, metric)
    mask = np.random.default_rng(4).random(1000) < 0.1
    scores, ids = search_exact(
        torch.from_numpy(matrix),
        torch.from_numpy(queries),
        10,
        metric,
        mask=torch.from_numpy(mask),
        block_rows=block_rows,
    )
    _check(scores, ids, *_reference(matrix, queries, 10, metric, mask))
    assert mask[ids.numpy()].all()


@pytest.mark.parametrize("metric", METRICS)
def test_dense_mask(metric: str) -> None:
    """~70% eligible takes the score-then-mask path."""
    matrix, queries = _data(1000, 32, 12, seed=5)
    matrix, queries = _prepare(matrix, queries, metric)
    mask = np.random.default_rng(6).random(1000) < 0.7
    scores, ids = search_exact(
        torch.from_numpy(matrix),
        torch.from_numpy(queries),
        25,
        metric,
        mask=torch.from_numpy(mask),
        block_rows=300,
    )
    _check(scores, ids, *_reference(matrix, queries, 25, metric, mask))
    assert mask[ids.numpy()].all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("eligible_rows", [[], [7], [3, 450, 999]])
def test_mask_with_fewer_than_k_eligible(metric: str, eligible_rows: list[int]) -> None:
    matrix, queries = _data(1000, 16, 5, seed=7)
    matrix, queries = _prepare(matrix, queries, metric)
    mask = np.zeros(1000, dtype=bool)
    mask[eligible_rows] = True
    k = 5
    scores, ids = search_exact(
        torch.from_numpy(matrix),
        torch.from_numpy(queries),
        k,
        metric,
        mask=torch.from_numpy(mask),
        block_rows=128,
    )
    _check(scores, ids, *_reference(matrix, queries, k, metric, mask))
    m = len(eligible_rows)
    assert sorted(ids[0, :m].tolist()) == sorted(eligible_rows)
    assert torch.all(ids[:, m:] == -1)
    assert torch.all(scores[:, m:] == float("-inf"))
    assert torch.isfinite(scores[:, :m]).all()


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block_rows", [4, 10])
def test_dense_mask_with_fewer_than_k_eligible(metric: str, block_rows: int) -> None:
    """30% eligible is scored then masked: masked rows reach the top-k as -inf and must come back as -1."""
    matrix, queries = _data(10, 8, 4, seed=17)
    matrix, queries = _prepare(matrix, queries, metric)
    mask = np.zeros(10, dtype=bool)
    mask[[1, 4, 8]] = True
    scores, ids = search_exact(
        torch.from_numpy(matrix),
        torch.from_numpy(queries),
        6,
        metric,
        mask=torch.from_numpy(mask),
        block_rows=block_rows,
    )
    _check(scores, ids, *_reference(matrix, queries, 6, metric, mask))
    assert torch.all(ids[:, 3:] == -1)
    assert torch.all(scores[:, 3:] == float("-inf"))


@pytest.mark.parametrize("metric", METRICS)
def test_k_larger_than_n(metric: str) -> None:
    matrix, queries = _data(6, 8, 3, seed=8)
    matrix, queries = _prepare(matrix, queries, metric)
    scores, ids = search_exact(torch.from_numpy(matrix), torch.from_numpy(queries), 10, metric, block_rows=4)
    _check(scores, ids, *_reference(matrix, queries, 10, metric))
    # every row is returned exactly once, then padding
    assert sorted(ids[0, :6].tolist()) == list(range(6))
    assert torch.all(ids[:, 6:] == -1)


@pytest.mark.parametrize("metric", METRICS)
def test_empty_matrix(metric: str) -> None:
    scores, ids = search_exact(torch.zeros(0, 8), torch.randn(3, 8), 4, metric)
    assert scores.shape == (3, 4) and ids.shape == (3, 4)
    assert torch.all(ids == -1)
    assert torch.all(scores == float("-inf"))


def test_no_queries() -> None:
    scores, ids = search_exact(torch.randn(10, 8), torch.zeros(0, 8), 4, "ip")
    assert scores.shape == (0, 4) and ids.shape == (0, 4)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("block_rows", [1, 128, 999, 1000, 1001])
def test_block_boundaries(metric: str, block_rows: int) -> None:
    """Block sizes that do not divide n, equal it, exceed it, or are a single row give identical results."""
    matrix, queries = _data(1000, 24, 6, seed=9)
    matrix, queries = _prepare(matrix, queries, metric)
    scores, ids = search_exact(torch.from_numpy(matrix), torch.from_numpy(queries), 20, metric, block_rows=block_rows)
    _check(scores, ids, *_reference(matrix, queries, 20, metric))


@pytest.mark.parametrize("metric", METRICS)
def test_best_rows_straddling_blocks(metric: str) -> None:
    """Plant the exact query vectors at rows on both sides of a block edge: they must rank first."""
    matrix, queries = _data(1000, 16, 2, seed=10)
    matrix, queries = _prepare(matrix, queries, metric)
    matrix = matrix.copy()
    matrix[127] = queries[0] * (3 if metric == "ip" else 1)
    matrix[128] = queries[1] * (3 if metric == "ip" else 1)
    scores, ids = search_exact(torch.from_numpy(matrix), torch.from_numpy(queries), 3, metric, block_rows=128)
    assert ids[:, 0].tolist() == [127, 128]
    if metric == "l2":
        # fp32 expansion of |q - x|^2 leaves only rounding noise for an identical vector
        assert torch.all(scores[:, 0] <= 0) and torch.all(scores[:, 0] > -1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_batch_invariance(metric: str) -> None:
    matrix, queries = _data(3000, 64, 256, seed=11)
    # mix scales so the batch holds very different queries
    queries = queries * np.random.default_rng(12).uniform(0.1, 10.0, (256, 1)).astype(np.float32)
    matrix, queries = _prepare(matrix, queries, metric)
    m = torch.from_numpy(matrix)
    batch_scores, batch_ids = search_exact(m, torch.from_numpy(queries), 10, metric, block_rows=1024)
    for i in range(0, 256, 17):
        scores, ids = search_exact(m, torch.from_numpy(queries[i : i + 1]), 10, metric, block_rows=1024)
        assert torch.equal(ids[0], batch_ids[i])
        torch.testing.assert_close(scores[0], batch_scores[i], rtol=1e-5, atol=1e-5)


def test_l2_large_magnitude_keeps_order() -> None:
    """Values ~1e4 give squared norms ~1e10: fp32 |q|^2 - 2q.x + |x|^2 must still rank correctly."""
    rng = np.random.default_rng(13)
    d = 32
    matrix = (rng.standard_normal((800, d)) * 1e4).astype(np.float32)
    queries = (rng.standard_normal((8, d)) * 1e4).astype(np.float32)
    scores, ids = search_exact(torch.from_numpy(matrix), torch.from_numpy(queries), 10, "l2", block_rows=256)
    ref_scores, ref_ids = _reference(matrix, queries, 10, "l2")
    np.testing.assert_array_equal(ids.numpy(), ref_ids)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-4)
    assert torch.all(scores <= 0)


def test_l2_duplicate_row_scores_zero_not_positive() -> None:
    """Cancellation must not report a positive "negative distance" for an exact duplicate."""
    matrix = torch.randn(100, 64) * 1e3
    scores, ids = search_exact(matrix, matrix[[5, 42]].clone(), 1, "l2")
    assert ids[:, 0].tolist() == [5, 42]
    assert torch.all(scores <= 0)


def test_normalize_rows() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]], dtype=torch.float64)
    out = normalize_rows(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]]))
    assert not torch.isnan(out).any()


@pytest.mark.parametrize(
    ("matrix", "queries", "k", "metric"),
    [
        (torch.randn(5, 4), torch.randn(2, 4), 1, "euclid"),
        (torch.randn(5, 4), torch.randn(2, 3), 1, "ip"),
        (torch.randn(5, 4), torch.randn(4), 1, "ip"),
        (torch.randn(5, 4), torch.randn(2, 4), 0, "ip"),
    ],
)
def test_programming_errors_raise(matrix: torch.Tensor, queries: torch.Tensor, k: int, metric: str) -> None:
    with pytest.raises(ValueError):
        search_exact(matrix, queries, k, metric)


def test_bad_mask_shape_raises() -> None:
    with pytest.raises(ValueError):
        search_exact(torch.randn(5, 4), torch.randn(2, 4), 1, "ip", mask=torch.ones(4, dtype=torch.bool))


def _planted(n: int, d: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit rows and queries where each query has 5 planted rows at cosines 0.95 .. 0.75 and every other
    row sits near cosine 0: top-5 gaps (~0.05) dwarf half-precision rounding (~1e-3)."""
    rng = np.random.default_rng(seed)
    matrix = normalize_rows(torch.from_numpy(rng.standard_normal((n, d)))).numpy()
    queries = normalize_rows(torch.from_numpy(rng.standard_normal((q, d)))).numpy()
    planted = rng.choice(n, size=(q, 5), replace=False)
    for i in range(q):
        for j, cos in enumerate((0.95, 0.9, 0.85, 0.8, 0.75)):
            r = rng.standard_normal(d)
            r -= (r @ queries[i]) * queries[i]
            r /= np.linalg.norm(r)
            matrix[planted[i, j]] = cos * queries[i] + np.sqrt(1 - cos**2) * r
    return matrix.astype(np.float32), queries.astype(np.float32), planted


def _fp32_vs_half(
    matrix: np.ndarray, queries: np.ndarray, metric: str, dtype: torch.dtype, mask: torch.Tensor, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Search an fp32 copy on the CPU and a half copy on ``device``; returns both results on the CPU."""
    # Round both sides to the storage dtype first: the comparison then checks the kernel's arithmetic,
    # not the (expected) storage rounding.
    m = torch.from_numpy(matrix).to(dtype)
    qs = torch.from_numpy(queries).to(dtype).float()
    ref_scores, ref_ids = search_exact(m.float(), qs, 5, metric, mask=mask, block_rows=100)
    scores, ids = search_exact(m.to(device), qs.to(device), 5, metric, mask=mask.to(device), block_rows=100)
    assert scores.dtype == torch.float32 and ids.dtype == torch.int64
    assert scores.device.type == device and ids.device.type == device
    return ref_scores, ref_ids, scores.cpu(), ids.cpu()


_CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
)


@pytest.mark.parametrize("device", ["cpu", _CUDA])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_matrix_matches_fp32(device: str, metric: str, dtype: torch.dtype) -> None:
    matrix, queries, planted = _planted(512, 256, 8, seed=14)
    mask = torch.from_numpy(np.random.default_rng(15).random(512) < 0.5)
    mask[torch.from_numpy(planted.ravel())] = True
    ref_scores, ref_ids, scores, ids = _fp32_vs_half(matrix, queries, metric, dtype, mask, device)
    assert torch.equal(ids, ref_ids)
    assert torch.equal(ref_ids, torch.from_numpy(planted))  # the data really is well separated
    torch.testing.assert_close(scores, ref_scores, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("device", ["cpu", _CUDA])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_fp16_raw_large_magnitude(device: str, metric: str) -> None:
    """Raw values ~30 in 128 dims: |x|^2 and q.x ~1e5 exceed fp16's 65504, so norms and scores must be
    fp32 end to end (an fp16 intermediate would turn the nearest rows into inf / ties)."""
    rng = np.random.default_rng(16)
    matrix = (rng.standard_normal((512, 128)) * 30).astype(np.float32)
    queries = (rng.standard_normal((8, 128)) * 30).astype(np.float32)
    for i in range(8):  # near neighbours at clearly different distances
        for j in range(5):
            matrix[i * 5 + j] = queries[i] + rng.standard_normal(128) * 0.5 * (j + 1)
    mask = torch.ones(512, dtype=torch.bool)
    mask[-100:] = False
    ref_scores, ref_ids, scores, ids = _fp32_vs_half(matrix, queries, metric, torch.float16, mask, device)
    assert torch.isfinite(scores).all()
    assert torch.equal(ids, ref_ids)
    if metric == "l2":
        assert torch.equal(ids[:, 0], torch.arange(0, 40, 5))  # the closest planted neighbour wins
    # An "l2" score is a difference of terms ~1.2e5, so fp32 sums in another order (tensor cores on
    # CUDA: 0.17 off on the H200) differ by ~1e-6 of them; an fp16 intermediate would be off by its
    # spacing there (64) or overflow.
    magnitude = float(np.square(matrix).sum(1).max() + np.square(queries).sum(1).max()) if metric == "l2" else 0.0
    torch.testing.assert_close(scores, ref_scores, rtol=1e-3, atol=max(1e-2, 4e-6 * magnitude))


# -- top-k by group maxima ------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", _CUDA])
@pytest.mark.parametrize(
    ("n", "k", "group"), [(4096, 10, 64), (8192, 10, 128), (5000, 40, 32), (1000, 7, 16), (300, 10, 64)]
)
def test_top_k_by_group_maxima_equals_torch_topk(device: str, n: int, k: int, group: int) -> None:
    from arrwdb.kernels.topk import top_k_of_block

    generator = torch.Generator().manual_seed(n + k)
    scores = torch.randn((33, n), generator=generator)
    scores[5] = -float("inf")  # an all-masked row
    scores[6, : n // 2] = -float("inf")  # half masked
    scores[7] = torch.randint(0, 3, (n,), generator=generator).float()  # heavy ties
    scores[8, n - 3 :] = 100.0  # the best hits in the partial last group
    scores = scores.to(device)
    top, positions = top_k_of_block(scores, k, group)
    expected, _ = torch.topk(scores, k, dim=1, sorted=True)
    torch.testing.assert_close(top, expected)  # the same k best values, best first
    torch.testing.assert_close(scores.gather(1, positions), top)  # positions point at those values
    assert all(len(set(row.tolist())) == k for row in positions)  # no position twice
    assert set(positions[8, :3].tolist()) == {n - 3, n - 2, n - 1}


def test_the_group_size_follows_the_device() -> None:
    from arrwdb.kernels import TOPK_GROUP, topk_group_for
    from arrwdb.kernels.topk import TOPK_GROUP_CUDA

    assert topk_group_for(torch.device("cpu")) == TOPK_GROUP == 64
    assert topk_group_for(torch.device("cuda", 0)) == TOPK_GROUP_CUDA == 128  # a name only: no GPU needed


@pytest.mark.parametrize("metric", METRICS)
def test_search_exact_by_group_maxima_matches_plain(metric: str) -> None:
    matrix, queries = _prepare(*_data(3000, 32, 16, seed=21), metric)
    mask = torch.from_numpy(np.random.default_rng(22).random(3000) < 0.6)
    m, q = torch.from_numpy(matrix), torch.from_numpy(queries)
    plain = search_exact(m, q, 10, metric, mask=mask, block_rows=1024, group=0)
    grouped = search_exact(m, q, 10, metric, mask=mask, block_rows=1024, group=16)
    torch.testing.assert_close(grouped[0], plain[0])
    assert torch.equal(grouped[1], plain[1])  # random data: no ties, so the same ids in the same order


# -- the scan as one TorchScript call ---------------------------------------------------------------


def test_the_scripted_scan_equals_the_same_function_run_eagerly() -> None:
    from arrwdb.kernels import topk

    generator = torch.Generator().manual_seed(21)
    matrix = torch.randn((3000, 24), generator=generator)
    queries = torch.randn((9, 24), generator=generator)
    mask = torch.rand((3000,), generator=generator) < 0.6
    selective = torch.rand((3000,), generator=generator) < 0.05  # gathered, not masked
    for metric in METRICS:
        for rows_mask in (None, mask, selective):
            args = (matrix, queries, 10, metric == "l2", rows_mask, None, 512, 16)
            scripted_scores, scripted_ids = topk.SCAN.compiled(*args)
            eager_scores, eager_ids = topk.SCAN.fn(*args)
            assert torch.equal(scripted_ids, eager_ids)
            torch.testing.assert_close(scripted_scores, eager_scores)


def test_a_failing_script_falls_back_to_the_eager_function() -> None:
    from arrwdb.kernels.script import Scripted

    def double(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    calls: list[str] = []

    def broken(x: torch.Tensor) -> torch.Tensor:
        calls.append("script")
        raise RuntimeError(message)

    scripted = Scripted(double)
    assert torch.equal(scripted(torch.ones(2)), torch.full((2,), 2.0))  # compiled and run
    scripted.__dict__["compiled"] = broken
    # Out of memory inside the script: answered eagerly (which raises the error with its own type when
    # the memory is still short), and the script stays in use.
    message = "The following operation failed in the TorchScript interpreter: CUDA out of memory"
    assert torch.equal(scripted(torch.ones(2)), torch.full((2,), 2.0)) and scripted.failure is None
    # Any other failure: the same answer eagerly, and eagerly from then on.
    message = "something TorchScript could not run"
    assert torch.equal(scripted(torch.ones(2)), torch.full((2,), 2.0)) and scripted.failure is not None
    assert torch.equal(scripted(torch.ones(2)), torch.full((2,), 2.0))
    assert calls == ["script", "script"]
