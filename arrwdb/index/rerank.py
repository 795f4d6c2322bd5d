"""fp32 re-ranking of a half-precision scan, and the test that says when its result is exact.

A half-precision scan (fp16/bf16 storage, fp32 accumulation) ranks rows by approximate scores; its top
``fetch`` candidates are re-scored exactly from an fp32 copy of the rows and the best k kept.  That is
provably the exact top-k when the k-th exact score is at least the last candidate's approximate score
plus the scan's error bound: a row that was not fetched scored at most that approximately, so at most
that plus the bound exactly.  Queries that fail the test fetch 4x more candidates, up to a cap; past
the cap a missed row can only score within twice the bound of the k-th, a tie at half precision.
The whole search (scan, re-rank, widening) runs as one TorchScript call: ``SEARCH_HALF``.
"""

from __future__ import annotations

import torch

from arrwdb.kernels.script import Scripted
from arrwdb.kernels.topk import no_hits, query_rows, scan_rows

FACTOR = 4  # candidates fetched per wanted hit, and the growth of a widened fetch
MIN_FETCH = 32  # a k=1 search still re-ranks enough rows for the test to pass on ordinary data
MAX_FETCH = 4096  # widening stops here (or at 4k when k is larger)
GATHER_BYTES = 256 << 20  # the [queries x candidates x dimension] fp32 rows gathered at once
# Slack over the analytical bound: tensor-core accumulators may truncate rather than round.
SAFETY = 2.0

_UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}


def first_fetch(k: int, rows: int) -> int:
    return max(k, min(rows, max(k * FACTOR, MIN_FETCH)))


def next_fetch(fetch: int, k: int, rows: int) -> int:
    """The wider fetch for a query that failed the test; equal to ``fetch`` when it cannot widen."""
    cap = max(MAX_FETCH, k * FACTOR)
    return max(fetch, min(rows, fetch * FACTOR, cap))


def unit_roundoff(dtype: torch.dtype) -> float:
    return _UNIT_ROUNDOFF[dtype]


def error_bound(
    query_norms: torch.Tensor, max_row_norm: float, dimension: int, dtype: torch.dtype, metric: str
) -> torch.Tensor:
    """Per query, the largest difference between a row's approximate and exact score.

    Rounding q and x to the storage dtype moves q.x by at most (2u + u^2)|q||x| (u: its unit roundoff),
    the fp32 accumulation of d products by d * 2^-24 |q||x| (counted twice, for truncating hardware),
    and fp16 subnormals (below 6.1e-5) add up to 2^-25 sqrt(d) per rounded vector.  An "l2" score is
    2 q.x - |x|^2 - |q|^2 with exact fp32 norms: twice the inner-product error plus the norms' rounding.
    """
    return bound_of(
        query_norms, max_row_norm, dimension, _UNIT_ROUNDOFF[dtype], dtype == torch.float16, metric == "l2", SAFETY
    )


def bound_of(
    query_norms: torch.Tensor,
    max_row_norm: float,
    dimension: int,
    unit_roundoff: float,
    fp16: bool,
    l2: bool,
    safety: float,
) -> torch.Tensor:
    """error_bound's formula on plain numbers (scriptable: run inside the scripted search)."""
    u = unit_roundoff
    relative = 2 * u + u * u + dimension * 2.0**-23
    q = query_norms.float()
    bound = relative * q * max_row_norm
    if fp16:
        bound = bound + dimension**0.5 * 2.0**-25 * (q + max_row_norm)
    if l2:
        bound = 2 * bound + 2.0**-22 * (q * q + max_row_norm**2)
    return bound * safety


def certified(kth_exact: torch.Tensor, last_approx: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Per query: is the re-ranked top-k exact?  (-inf scores mean every eligible row was fetched.)"""
    return kth_exact >= last_approx + bound


def fetch_schedule(k: int, rows: int) -> list[int]:
    """The candidate counts a query's re-rank goes through: the first fetch, then each wider one."""
    fetches = [first_fetch(k, rows)]
    while (wider := next_fetch(fetches[-1], k, rows)) != fetches[-1]:
        fetches.append(wider)
    return fetches


def exact_scores(
    source: torch.Tensor,
    queries: torch.Tensor,
    positions: torch.Tensor,
    norms_sq: torch.Tensor | None,
    gather_bytes: int,
) -> torch.Tensor:
    """fp32 scores [q, c] of the rows of ``source`` at ``positions`` [q, c] (-1: none, scored -inf),
    computed where ``source`` lives, in chunks that gather at most ``gather_bytes`` of rows; on the
    device of ``positions``.  With ``norms_sq`` (the rows' squared norms) the score is "l2"'s."""
    where = source.device
    valid = positions >= 0
    safe = positions.clamp(min=0)
    rows_sq: torch.Tensor | None = None
    if norms_sq is not None:
        rows_sq = norms_sq[safe].to(where)
    safe_there, queries_there = safe.to(where), queries.to(where)
    out = torch.empty(positions.shape, dtype=torch.float32, device=where)
    count = positions.shape[0]
    chunk = max(1, gather_bytes // max(1, positions.shape[1] * source.shape[1] * 4))
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        rows = source[safe_there[start:stop]].float()  # [c, candidates, d]
        dots = torch.bmm(rows, queries_there[start:stop].unsqueeze(2)).squeeze(2)
        if rows_sq is not None:
            q_sq = queries_there[start:stop].pow(2).sum(dim=1, keepdim=True)
            dots = (2 * dots - q_sq - rows_sq[start:stop]).clamp(max=0.0)
        out[start:stop] = dots
    return out.to(positions.device).masked_fill_(~valid, float("-inf"))


def search_half(
    matrix: torch.Tensor,
    exact: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    l2: bool,
    mask: torch.Tensor | None,
    norms_sq: torch.Tensor | None,
    normalize: bool,
    max_row_norm: float,
    unit_roundoff: float,
    safety: float,
    fp16_max: float,
    fetches: list[int],
    block_rows: int,
    exact_block_rows: int,
    group: int,
    gather_bytes: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Scan the half-precision ``matrix`` for candidates, re-rank them from the fp32 ``exact`` copy,
    and fetch wider (``fetches``) for the queries whose top-k the error bound (``bound_of``: the largest
    row norm, the storage's unit roundoff, the safety factor) cannot certify.  ``normalize``: the
    queries are L2-normalised first (cosine).  Returns (scores [q, k], positions [q, k], queries widened) on the
    device of ``matrix``."""
    device = matrix.device
    count = queries.shape[0]
    scores, positions = no_hits(count, k, device)
    if matrix.shape[0] == 0 or count == 0:
        return scores, positions, 0
    queries = query_rows(queries, device, normalize)
    norms = torch.linalg.vector_norm(queries, dim=[1])
    fp16 = matrix.dtype == torch.float16
    bound = bound_of(norms, max_row_norm, matrix.shape[1], unit_roundoff, fp16, l2, safety)
    # A query value beyond fp16's range would turn into inf in the scan: scan such queries in fp32.
    too_big = queries.abs().amax(dim=1) > fp16_max
    todo = torch.arange(count, device=device)
    if bool(too_big.any()):
        todo = todo[~too_big]
        big = too_big.nonzero().squeeze(1)
        big_scores, big_positions = scan_rows(exact, queries[big], k, l2, mask, norms_sq, exact_block_rows, group)
        scores[big], positions[big] = big_scores.to(device), big_positions.to(device)
    widened = 0
    for step in range(len(fetches)):
        if todo.shape[0] == 0:
            break
        approx, candidates = scan_rows(matrix, queries[todo], fetches[step], l2, mask, norms_sq, block_rows, group)
        found_scores = exact_scores(exact, queries[todo], candidates, norms_sq if l2 else None, gather_bytes)
        top_scores, order = torch.topk(found_scores, k, dim=1, sorted=True)  # fetch >= k always
        found = candidates.gather(1, order).masked_fill_(top_scores == float("-inf"), -1)
        done = certified(top_scores[:, k - 1], approx[:, -1], bound[todo])
        if step == len(fetches) - 1 or bool(done.all()):
            scores[todo], positions[todo] = top_scores, found
            break
        scores[todo[done]], positions[todo[done]] = top_scores[done], found[done]
        todo = todo[~done]
        widened += todo.shape[0]
    return scores, positions, widened


# The half-precision search as one TorchScript call (kernels/script.py says why).
SEARCH_HALF = Scripted(search_half)
