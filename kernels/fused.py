"""A fused exact scan (Triton): query tiles times row tiles with fp32 accumulation, each tile's best
candidates kept on chip, so the [queries x rows] score matrix is never written.

``search_exact`` (topk.py) multiplies a block of rows by the queries into an fp32 score matrix and
reads it back for the top-k: on a GPU, 1M x 768 fp16 rows at batch 256 write and read 1 GB of scores
for 1.5 GB of rows.  Here one program takes ``BLOCK_Q`` queries and ``GROUP`` rows, accumulates their
dot products over the dimension in fp32 registers, applies the mask (filters, tombstones) and the L2
terms there, and writes only the group's ``K`` best (score, row) per query: the k best of a query lie
among the k best of every group, so a top-k over the groups' candidates is exact.  Cosine and inner
product rank by ``q . x`` (cosine over normalised rows and queries), L2 by ``2 q . x - |x|^2``, the
query's ``|q|^2`` subtracted at the end, as in ``search_exact``.

It runs where Triton runs: on CUDA, or anywhere through Triton's interpreter (``TRITON_INTERPRET=1``
set before this module is imported), which the tests use on the CPU against ``search_exact``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from arrwdb.kernels.topk import METRICS, no_hits, query_rows

FUSED_MAX_K = 32  # beyond this a group's candidates cost more registers than the scores they replace
GROUP = 128  # rows per program
BLOCK_Q = 32  # queries per program
BLOCK_D = 64  # dimensions per step of the dot product


@triton.jit
def _group_topk(
    queries,
    rows,
    norms_sq,
    eligible,
    out_scores,
    out_ids,
    n_queries,
    n_rows,
    dimension,
    query_stride,
    row_stride,
    groups,
    L2: tl.constexpr,
    MASKED: tl.constexpr,
    K: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    GROUP: tl.constexpr,
    BLOCK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    query_block = tl.program_id(0)
    group = tl.program_id(1)
    q_offsets = query_block * BLOCK_Q + tl.arange(0, BLOCK_Q)
    r_offsets = group * GROUP + tl.arange(0, GROUP)
    q_live = q_offsets < n_queries
    r_live = r_offsets < n_rows
    scores = tl.zeros((BLOCK_Q, GROUP), dtype=tl.float32)
    for start in range(0, dimension, BLOCK_D):
        d_offsets = start + tl.arange(0, BLOCK_D)
        d_live = d_offsets < dimension
        q_tile = tl.load(
            queries + q_offsets[:, None] * query_stride + d_offsets[None, :],
            mask=q_live[:, None] & d_live[None, :],
            other=0.0,
        )
        r_tile = tl.load(
            rows + r_offsets[:, None] * row_stride + d_offsets[None, :],
            mask=r_live[:, None] & d_live[None, :],
            other=0.0,
        )
        if IEEE:
            scores += tl.dot(q_tile, tl.trans(r_tile), input_precision="ieee")
        else:
            scores += tl.dot(q_tile, tl.trans(r_tile))
    if L2:
        scores = 2.0 * scores - tl.load(norms_sq + r_offsets, mask=r_live, other=0.0)[None, :]
    keep = r_live
    if MASKED:
        keep = keep & (tl.load(eligible + r_offsets, mask=r_live, other=0) != 0)
    scores = tl.where(keep[None, :], scores, float("-inf"))
    columns = tl.arange(0, GROUP)
    for slot in tl.static_range(K):
        best = tl.max(scores, axis=1)
        at = tl.argmax(scores, axis=1)
        out = (q_offsets * groups + group) * K + slot
        tl.store(out_scores + out, best, mask=q_live)
        tl.store(out_ids + out, group * GROUP + at, mask=q_live)
        scores = tl.where(columns[None, :] == at[:, None], float("-inf"), scores)


@torch.inference_mode()
def fused_search(
    matrix: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    metric: str,
    *,
    mask: torch.Tensor | None = None,
    norms_sq: torch.Tensor | None = None,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``search_exact``'s answer (up to the order of exact ties) for ``k`` <= ``FUSED_MAX_K``:
    ``(scores [q, k] float32, ids [q, k] int64)``, best first, id -1 and score -inf for empty slots."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if not 1 <= k <= FUSED_MAX_K:
        raise ValueError(f"k must be between 1 and {FUSED_MAX_K} for the fused scan, got {k}")
    n, dimension = matrix.shape
    count = queries.shape[0]
    device = matrix.device
    if n == 0 or count == 0:
        return no_hits(count, k, device)
    l2 = metric == "l2"
    queries_f32 = query_rows(queries, device, normalize)
    queries_in = queries_f32.to(matrix.dtype).contiguous()
    rows = matrix.contiguous()
    norms = torch.zeros(1, dtype=torch.float32, device=device)
    if l2:
        norms = (
            norms_sq.to(device=device, dtype=torch.float32)
            if norms_sq is not None
            else torch.linalg.vector_norm(rows, dim=[1], dtype=torch.float32).square()
        ).contiguous()
    eligible = torch.ones(1, dtype=torch.int8, device=device)
    if mask is not None:
        eligible = mask.to(device=device, dtype=torch.int8).contiguous()
    per_group = min(k, GROUP)
    groups = triton.cdiv(n, GROUP)
    out_scores = torch.empty((count, groups, per_group), dtype=torch.float32, device=device)
    out_ids = torch.empty((count, groups, per_group), dtype=torch.int32, device=device)
    grid = (triton.cdiv(count, BLOCK_Q), groups)
    _group_topk[grid](
        queries_in,
        rows,
        norms,
        eligible,
        out_scores,
        out_ids,
        count,
        n,
        dimension,
        queries_in.stride(0),
        rows.stride(0),
        groups,
        L2=l2,
        MASKED=mask is not None,
        K=per_group,
        BLOCK_Q=BLOCK_Q,
        GROUP=GROUP,
        BLOCK_D=BLOCK_D,
        IEEE=matrix.dtype == torch.float32,
    )
    candidates = out_scores.reshape(count, groups * per_group)
    take = min(k, candidates.shape[1])
    scores, position = torch.topk(candidates, take, dim=1, sorted=True)
    ids = out_ids.reshape(count, groups * per_group).gather(1, position).long()
    if take < k:  # fewer rows than k: the empty slots
        empty_scores, empty_ids = no_hits(count, k - take, device)
        scores, ids = torch.cat((scores, empty_scores), dim=1), torch.cat((ids, empty_ids), dim=1)
    if l2:
        scores = scores.sub(torch.linalg.vector_norm(queries_f32, dim=[1], keepdim=True).square()).clamp_max(0.0)
    ids.masked_fill_(scores == float("-inf"), -1)
    return scores, ids
