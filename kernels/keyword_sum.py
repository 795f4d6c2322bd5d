"""The best rows of a batch of keyword searches, each the sum of its words' per-row BM25 scores.

A keyword search's score for a row is the sum of that row's scores for each of the search's words
(arrwdb.store.keyword_scores).  Here the searches of a batch are added up and ranked in one
TorchScript call (kernels/script.py: the device worker gives up the GIL once for the whole batch
instead of holding it through a dozen numpy calls per search): each search's words' (row, score)
pairs are added into a dense float64 vector over the rows' span (reused: it stays in the CPU's cache),
in the order given, and its top k taken; each search's k are ordered by score (descending), row
(ascending).

Bit for bit what ``numpy.bincount`` over the same pairs gives (arrwdb.store.keyword_scores.top):
``index_add_`` on a one-dimensional CPU tensor adds the pairs one after another in their order, so a
row's sum is its scores added in its words' order, starting from 0.0.  Scores must be positive (BM25
with FTS5's IDF floor is): a sum of 0 marks a row that no word holds.
"""

from __future__ import annotations

import torch

from arrwdb.kernels.script import Scripted


def summed_top(
    rows: list[torch.Tensor], scores: list[torch.Tensor], starts: list[int], base: int, span: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Search ``n`` adds up ``rows[i]`` / ``scores[i]`` for ``starts[n] <= i < starts[n + 1]``: its
    words' row ids (int64, each in [base, base + span)) and scores (float64), in its words' order
    (``k`` < ``span``).  Returns,
    per search, the ``k + 1`` best sums [searches x (k + 1)] (0 past the rows matched) and their row
    ids; the first ``k`` ordered by (score desc, row asc).  The last column is only there to
    tell a tie at the cut: a (k + 1)-th sum equal to the k-th, which the caller settles."""
    searches = len(starts) - 1
    sums = torch.zeros(span, dtype=torch.float64)  # one search's sums at a time: it stays in the cache
    best: list[torch.Tensor] = []
    at: list[torch.Tensor] = []
    for n in range(searches):
        sums.zero_()
        for i in range(starts[n], starts[n + 1]):
            sums.index_add_(0, rows[i] - base if base else rows[i], scores[i])
        found = torch.topk(sums, k + 1)
        best.append(found[0])
        at.append(found[1])
    values = torch.stack(best)
    offsets = torch.stack(at)
    # Order each search's first k by row, then (stable) by score descending: ties by row.
    head, by_offset = torch.sort(offsets[:, :k], dim=1)
    head_values = torch.gather(values[:, :k], 1, by_offset)
    head_values, by_score = torch.sort(head_values, dim=1, descending=True, stable=True)
    head = torch.gather(head, 1, by_score)
    return torch.cat([head_values, values[:, k:]], dim=1), torch.cat([head, offsets[:, k:]], dim=1) + base


SUMMED_TOP = Scripted(summed_top)
