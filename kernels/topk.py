"""Exact (brute-force) top-k search over a dense matrix of stored vectors.

Scores are "higher is closer" for every metric so callers never branch on the metric:

* ``"ip"``: inner product ``q . x``.
* ``"cosine"``: also computed as ``q . x``; the caller must already have L2-normalised both the stored
  rows and the queries (see :func:`normalize_rows`), which makes the inner product the cosine similarity.
* ``"l2"``: the NEGATIVE squared Euclidean distance ``-(|q|^2 - 2 q.x + |x|^2)``, clamped to ``<= 0``
  because cancellation can leave a tiny positive value for near-identical vectors.

The matrix is scanned in blocks of ``block_rows`` rows and a running top-k is merged after each block,
so temporary memory is bounded by ``q x block_rows`` scores however many rows are stored.
"""

from __future__ import annotations

import torch

from arrwdb.kernels.script import Scripted

METRICS = ("cosine", "ip", "l2")

# A block's top-k by group maxima (``top_k_of_block``): the group maxima cut the rows a top-k must
# sort, which on CPUs is faster than a plain top-k of the whole block, never slower.
TOPK_GROUP = 64
# On a GPU, larger groups: the H200 runs' ``kernel_parts`` measured the whole kernel faster with
# groups of 128 than of 64 (docs/gpu/h200-run*.json; docs/PERFORMANCE.md, "GPU check").
TOPK_GROUP_CUDA = 128
_BLOCK_ROWS = 65536  # rows per block on a CPU
_SCORE_BLOCK_BYTES = 512 << 20  # a GPU block's [queries x rows] fp32 scores: fewer, larger blocks there


def block_rows_for(device: torch.device, queries: int) -> int:
    """Rows per scanned block for ``queries`` queries on ``device``."""
    if device.type == "cpu":
        return _BLOCK_ROWS
    return max(_BLOCK_ROWS, min(1 << 21, _SCORE_BLOCK_BYTES // (4 * max(queries, 1))))


def topk_group_for(device: torch.device) -> int:
    """The group size of ``top_k_of_block`` on ``device``."""
    return TOPK_GROUP_CUDA if device.type == "cuda" else TOPK_GROUP


def scores_fp32(queries_mm: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``queries_mm @ rows.T`` as float32 [q, rows], accumulated in fp32 for every storage dtype."""
    if rows.dtype == torch.float32:
        return torch.mm(queries_mm, rows.t())
    if rows.is_cuda:
        # cuBLAS accumulates half inputs in fp32 anyway; asking for an fp32 output (torch >= 2.8) keeps
        # raw, un-normalised data from overflowing an fp16 result (max 65504) before it is widened.
        return torch.mm(queries_mm, rows.t(), out_dtype=torch.float32)
    # CPUs have no fast half GEMM to protect: widen the block so the product itself is fp32.
    return torch.mm(queries_mm.float(), rows.float().t())


def top_k_of_block(scores: torch.Tensor, k: int, group: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(scores, k, dim=1, sorted=True)`` over [q, n] scores, by way of group maxima when
    ``group`` > 1 and that reads less.

    A query's k best scores lie in the k groups (runs of ``group`` columns) with the largest maxima:
    every group that holds one of them has a maximum at least the k-th best score, and at most k groups
    can.  So one pass takes each group's maximum, a small top-k picks k groups, and the exact top-k runs
    over their k x group scores (ties may come back in another order, as with any top-k).  On a GPU a
    long row's radix select reads it several times; this reads it once.  On a CPU (one thread, 64 x
    65,536 scores, k = 10) it took 1.3 ms against torch.topk's 5.5 ms.
    """
    q, n = scores.shape[0], scores.shape[1]
    groups = n // group if group > 1 else 0
    if groups == 0 or k * group * 4 > n or scores.stride(1) != 1:
        top, position = torch.topk(scores, k, dim=1, sorted=True)
        return top, position
    full = groups * group
    maxima = scores.as_strided([q, groups, group], [scores.stride(0), group, 1]).amax(dim=[2])
    chosen = torch.topk(maxima, k, dim=1, sorted=False)[1]
    offsets = torch.arange(group, device=scores.device)
    columns = (chosen.unsqueeze(2) * group + offsets).reshape(q, k * group)
    if full < n:  # the last, partial group is always a candidate
        tail = torch.arange(full, n, device=scores.device).expand(q, n - full)
        columns = torch.cat((columns, tail), dim=1)
    top, position = torch.topk(scores.gather(1, columns), k, dim=1, sorted=True)
    return top, columns.gather(1, position)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise the last dimension in fp32; all-zero rows stay all-zero instead of becoming NaN."""
    xf = x.float()
    norms = torch.linalg.vector_norm(xf, dim=[-1], keepdim=True)
    # Dividing by 1 leaves a zero row at zero; any non-zero norm (even subnormal) is used as is.
    return xf / torch.where(norms == 0, torch.ones_like(norms), norms)


@torch.inference_mode()
def search_exact(
    matrix: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    metric: str,
    *,
    mask: torch.Tensor | None = None,
    norms_sq: torch.Tensor | None = None,
    block_rows: int = _BLOCK_ROWS,
    group: int = TOPK_GROUP,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of ``queries`` [q, d] against ``matrix`` [n, d] (``normalize``: the queries are
    L2-normalised first, for cosine over normalised rows).

    ``matrix`` is float32 (float16/bfloat16 are meant for CUDA); ``mask`` [n] bool marks eligible rows
    (True) and is applied before top-k, so k eligible rows come back whenever k exist. ``norms_sq`` [n]
    are the rows' squared L2 norms in fp32 for ``"l2"`` (computed per block when None; ignored otherwise).
    ``group`` > 1 picks each block's top-k by group maxima (``top_k_of_block``); 0 a plain top-k.

    Returns ``(scores [q, k] float32, ids [q, k] int64)`` on ``matrix.device``, best first; ids are row
    positions in ``matrix``, and slots beyond the number of eligible rows hold id -1 and score -inf.
    Raises ValueError for a bad metric, k < 1 or mismatched shapes (programming errors, not user input).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if matrix.dim() != 2 or queries.dim() != 2:
        raise ValueError(f"matrix and queries must be 2-D, got {tuple(matrix.shape)} and {tuple(queries.shape)}")
    n, d = matrix.shape
    if queries.shape[1] != d:
        raise ValueError(f"query dim {queries.shape[1]} != matrix dim {d}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    if mask is not None and (mask.shape != (n,) or mask.dtype != torch.bool):
        raise ValueError(f"mask must be bool [{n}], got {mask.dtype} {tuple(mask.shape)}")
    if norms_sq is not None and norms_sq.shape != (n,):
        raise ValueError(f"norms_sq must be [{n}], got {tuple(norms_sq.shape)}")

    return SCAN(matrix, queries, k, metric == "l2", mask, norms_sq, block_rows, group, normalize)


def no_hits(count: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A result with every slot empty: scores -inf, ids -1 ([count, k] each)."""
    scores = torch.full((count, k), float("-inf"), dtype=torch.float32, device=device)
    return scores, torch.full((count, k), -1, dtype=torch.int64, device=device)


def query_rows(queries: torch.Tensor, device: torch.device, normalize: bool) -> torch.Tensor:
    """The queries in float32 on ``device``, L2-normalised when ``normalize`` (cosine)."""
    rows = queries.to(device=device, dtype=torch.float32)
    return normalize_rows(rows) if normalize else rows


def scan_rows(
    matrix: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    l2: bool,
    mask: torch.Tensor | None,
    norms_sq: torch.Tensor | None,
    block_rows: int,
    group: int,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """search_exact's work after its checks, on trusted arguments (``l2``: the "l2" metric); run as one
    TorchScript call by ``SCAN``, and called from the scripted half-precision search (rerank.py)."""
    device = matrix.device
    n = matrix.shape[0]
    q = queries.shape[0]
    best_scores, best_ids = no_hits(q, k, device)
    if n == 0 or q == 0:
        return best_scores, best_ids

    queries_f32 = query_rows(queries, device, normalize)
    # Half-precision matrices use tensor-core matmuls on CUDA; everything after the matmul is fp32.
    queries_mm = queries_f32 if matrix.dtype == torch.float32 else queries_f32.to(matrix.dtype)
    q_norms_sq: torch.Tensor | None = None
    if l2:
        q_norms_sq = torch.linalg.vector_norm(queries_f32, dim=[1], keepdim=True).square_()
        if norms_sq is not None:
            norms_sq = norms_sq.to(device=device, dtype=torch.float32)

    # The blocks: every row (masked where the mask says so), or only the eligible rows, gathered.
    gathered: torch.Tensor | None = None
    dense_mask: torch.Tensor | None = None
    if mask is not None:
        on_device = mask.to(device)
        eligible = int(on_device.sum().item())  # the one host sync of the call; it picks the cheapest scan
        if eligible == 0:
            return best_scores, best_ids
        # At most a quarter of the rows eligible: gather them instead of scoring every row and masking
        # (gathering reads only the survivors, so very selective filters get proportionally cheaper).
        if 4 * eligible <= n:
            gathered = on_device.nonzero().squeeze(1)
            n = eligible
        elif eligible < n:
            dense_mask = on_device

    for start in range(0, n, block_rows):
        end = min(start + block_rows, n)
        if gathered is None:
            rows = matrix[start:end]
            rows_norms_sq = None if norms_sq is None else norms_sq[start:end]
        else:
            picked = gathered[start:end]
            rows = matrix.index_select(0, picked)
            rows_norms_sq = None if norms_sq is None else norms_sq.index_select(0, picked)
        if l2:
            if rows_norms_sq is None:
                # dtype=float32 squares and sums in fp32: in fp16, |x|^2 overflows past 65504.
                rows_norms_sq = torch.linalg.vector_norm(rows, dim=[1], dtype=torch.float32).square_()
            # Rank by 2 q.x - |x|^2: |q|^2 is constant per query, so it is subtracted (and the clamp
            # applied) on the final [q, k] only, saving passes over the [q, rows] block.
            if rows.dtype == torch.float32:
                scores = torch.addmm(rows_norms_sq, queries_mm, rows.t(), beta=-1, alpha=2)  # one BLAS call
            else:
                scores = scores_fp32(queries_mm, rows).mul_(2).sub_(rows_norms_sq)
        else:
            scores = scores_fp32(queries_mm, rows)  # [q, rows]; one matmul for the whole batch
        if dense_mask is not None:
            scores.masked_fill_(~dense_mask[start:end], float("-inf"))

        block_k = min(k, scores.shape[1])
        block_scores, block_pos = top_k_of_block(scores, block_k, group)
        block_ids = block_pos + start if gathered is None else gathered[start:end][block_pos]

        merged_scores = torch.cat((best_scores, block_scores), dim=1)
        merged_ids = torch.cat((best_ids, block_ids), dim=1)
        best_scores, pos = torch.topk(merged_scores, k, dim=1, sorted=True)
        best_ids = merged_ids.gather(1, pos)

    if q_norms_sq is not None:
        # -(|q|^2 - 2 q.x + |x|^2); fp32 cancellation can leave tiny positives for identical vectors.
        # Subtracting a per-query constant and clamping are monotone, so the order is unchanged.
        best_scores = best_scores.sub_(q_norms_sq).clamp_max_(0.0)
    # Masked rows score -inf and may fill slots when fewer than k rows are eligible: report them as
    # missing so an excluded (tombstoned / filtered) id can never leak out.
    best_ids.masked_fill_(best_scores == float("-inf"), -1)
    return best_scores, best_ids


# search_exact's work as one TorchScript call (kernels/script.py says why).
SCAN = Scripted(scan_rows)
