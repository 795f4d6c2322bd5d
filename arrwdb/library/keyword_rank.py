"""Ranking a batch of keyword searches whose words' scores are kept (arrwdb.store.keyword_scores):
the unfiltered ones whose rows lie close together are added up and ranked in one kernel call
(kernels/keyword_sum.py, off the GIL), the others one by one (``keyword_scores.top``).  Both give
the same rows, scores and order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from arrwdb.kernels.keyword_sum import SUMMED_TOP
from arrwdb.store.keyword_scores import DENSE_SPAN, Summable, WordScores, top

Ranked = list[tuple[int, float]]


class _Shared(NamedTuple):
    """A word's arrays as the kernel takes them (sharing their memory), and its first and last row."""

    rows: torch.Tensor
    scores: torch.Tensor
    first: int
    last: int


def rank_many(searches: Sequence[Summable]) -> list[Ranked]:
    """``keyword_scores.top`` of each search."""
    found: list[Ranked | None] = [None] * len(searches)
    dense = [i for i, search in enumerate(searches) if _summable_densely(search)]
    if dense:
        rows, scores, starts = [], [], [0]
        low, high, pairs = -1, -1, 0
        for i in dense:
            for entry in searches[i].entries:
                if entry.frequency:
                    shared = _shared(entry)
                    rows.append(shared.rows)
                    scores.append(shared.scores)
                    low = shared.first if low < 0 else min(low, shared.first)
                    high = max(high, shared.last)
                    pairs += entry.frequency
            starts.append(len(rows))
        base = 0 if low <= high - low else low  # row ids from 0: nothing to subtract, at most twice the cells
        span = high - base + 1
        limit = max(searches[i].limit for i in dense)
        # Mostly empty cells, or every row wanted: the sparse sums below.
        if limit < span - 1 and span <= DENSE_SPAN * pairs / len(dense):
            ranked = _kernel([searches[i] for i in dense], rows, scores, starts, base, span)
            for i, one in zip(dense, ranked, strict=True):
                found[i] = one
    return [ranked if ranked is not None else top(search) for ranked, search in zip(found, searches, strict=True)]


def _shared(entry: WordScores) -> _Shared:
    shared = entry.shared
    if shared is None:
        rows = entry.row_ids
        shared = entry.shared = _Shared(
            torch.from_numpy(rows), torch.from_numpy(entry.scores), int(rows[0]), int(rows[-1])
        )
    return shared  # type: ignore[no-any-return]


def _summable_densely(search: Summable) -> bool:
    """Unfiltered, with some pairs, every score positive (a sum of 0 then marks an unmatched row)."""
    return (
        search.allowed is None
        and all(entry.positive for entry in search.entries)
        and any(entry.frequency for entry in search.entries)
    )


def _kernel(
    searches: list[Summable],
    rows: list[torch.Tensor],
    scores: list[torch.Tensor],
    starts: list[int],
    base: int,
    span: int,
) -> list[Ranked]:
    k = max(search.limit for search in searches)
    values, row_ids = SUMMED_TOP(rows, scores, starts, base, span, k)
    values_list, rows_list = values.tolist(), row_ids.tolist()
    found = []
    for n, search in enumerate(searches):
        kth = values_list[n][k - 1]
        if kth > 0.0 and values_list[n][k] == kth:  # a tie at the cut: the lowest row ids of it are kept
            found.append(top(search))
            continue
        best = zip(rows_list[n][: search.limit], values_list[n][: search.limit], strict=True)
        found.append([(row, score) for row, score in best if score > 0.0])
    return found
