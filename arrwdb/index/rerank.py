"""fp32 re-ranking of a half-precision scan, and the test that says when its result is exact.

A half-precision scan (fp16/bf16 storage, fp32 accumulation) ranks rows by approximate scores; its top
``fetch`` candidates are re-scored exactly from an fp32 copy of the rows and the best k kept.  That is
provably the exact top-k when the k-th exact score is at least the last candidate's approximate score
plus the scan's error bound: a row that was not fetched scored at most that approximately, so at most
that plus the bound exactly.  Queries that fail the test fetch 4x more candidates, up to a cap; past
the cap a missed row can only score within twice the bound of the k-th, a tie at half precision.
"""

from __future__ import annotations

import torch

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


def error_bound(
    query_norms: torch.Tensor, max_row_norm: float, dimension: int, dtype: torch.dtype, metric: str
) -> torch.Tensor:
    """Per query, the largest difference between a row's approximate and exact score.

    Rounding q and x to the storage dtype moves q.x by at most (2u + u^2)|q||x| (u: its unit roundoff),
    the fp32 accumulation of d products by d * 2^-24 |q||x| (counted twice, for truncating hardware),
    and fp16 subnormals (below 6.1e-5) add up to 2^-25 sqrt(d) per rounded vector.  An "l2" score is
    2 q.x - |x|^2 - |q|^2 with exact fp32 norms: twice the inner-product error plus the norms' rounding.
    """
    u = _UNIT_ROUNDOFF[dtype]
    relative = 2 * u + u * u + dimension * 2.0**-23
    q = query_norms.float()
    bound = relative * q * max_row_norm
    if dtype == torch.float16:
        bound = bound + dimension**0.5 * 2.0**-25 * (q + max_row_norm)
    if metric == "l2":
        bound = 2 * bound + 2.0**-22 * (q * q + max_row_norm**2)
    return bound * SAFETY


def certified(kth_exact: torch.Tensor, last_approx: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """Per query: is the re-ranked top-k exact?  (-inf scores mean every eligible row was fetched.)"""
    return kth_exact >= last_approx + bound
