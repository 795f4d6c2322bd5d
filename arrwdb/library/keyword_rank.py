"""Ranking a batch of keyword searches whose words' scores are kept (arrwdb.store.keyword_scores):
the unfiltered ones whose rows lie close together are added up and ranked in one kernel call
(kernels/keyword_sum.py, off the GIL), the others one by one (``keyword_scores.top``).  Both give
the same rows, scores and order."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from arrwdb.kernels.keyword_sum import SUMMED_TOP
from arrwdb.store.keyword_scores import DENSE_SPAN, Summable, top

Ranked = list[tuple[int, float]]


def rank_many(searches: Sequence[Summable]) -> list[Ranked]:
    """``keyword_scores.top`` of each search."""
    found: list[Ranked | None] = [None] * len(searches)
    dense = [i for i, search in enumerate(searches) if _summable_densely(search)]
    if dense:
        base = min(int(searches[i].entries[j].row_ids[0]) for i in dense for j in _nonempty(searches[i]))
        high = max(int(searches[i].entries[j].row_ids[-1]) for i in dense for j in _nonempty(searches[i]))
        if base <= high - base:  # row ids from 0: no offsets to subtract, at most twice the cells
            base = 0
        span = high - base + 1
        pairs = sum(len(entry.row_ids) for i in dense for entry in searches[i].entries)
        limit = max(searches[i].limit for i in dense)
        # Mostly empty cells, or every row wanted: the sparse sums below.
        if limit < span - 1 and span <= DENSE_SPAN * pairs / len(dense):
            for i, ranked in zip(dense, _kernel([searches[i] for i in dense], base, span), strict=True):
                found[i] = ranked
    return [ranked if ranked is not None else top(search) for ranked, search in zip(found, searches, strict=True)]


def _nonempty(search: Summable) -> list[int]:
    return [j for j, entry in enumerate(search.entries) if len(entry.row_ids)]


def _summable_densely(search: Summable) -> bool:
    """Unfiltered, with some pairs, every score positive (a sum of 0 then marks an unmatched row)."""
    return (
        search.allowed is None
        and all(entry.positive for entry in search.entries)
        and any(len(entry.row_ids) for entry in search.entries)
    )


def _kernel(searches: list[Summable], base: int, span: int) -> list[Ranked]:
    rows, scores, starts = [], [], [0]
    for search in searches:
        for entry in search.entries:
            if entry.frequency:
                shared = entry.shared
                if shared is None:
                    shared = entry.shared = (torch.from_numpy(entry.row_ids), torch.from_numpy(entry.scores))
                rows.append(shared[0])
                scores.append(shared[1])
        starts.append(len(rows))
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
