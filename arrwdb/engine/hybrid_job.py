"""Hybrid queries as one job of the device worker: both legs, then their fusion.

A hybrid query's vector leg (the engine's search batch) and keyword leg (BM25 from the kept word
scores) run in one job of a queue of their own, one after the other on the device worker, so both
read the library at one version and are fused by row id; the fusion runs on the finishing thread
while the worker starts its next batch.  A request waits on one batch, not on one per leg: a closed
loop of hybrid clients is batched as vector clients are, in two half-size batches that leapfrog
(arrwdb.runtime.scheduler); with a queue per leg they would move in one wave that alternates with
the event loop's work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrwdb.engine.search_batch import Answers, SearchItem, answers_hits
from arrwdb.library.inputs import Hit, Retrieval
from arrwdb.library.retrieval import fuse, fuse_rows
from arrwdb.library.row_hits import RowHits

if TYPE_CHECKING:
    from arrwdb.engine.retrieval_search import KeywordItem

Leg = list[Hit] | RowHits  # one leg's hits, best first: objects, or the library's rows


@dataclass(frozen=True, eq=False)
class HybridItem:
    """One hybrid query: its vector leg (a block of one query), its keyword leg and how to fuse them."""

    vector: SearchItem
    keyword: KeywordItem
    options: Retrieval


@dataclass(frozen=True)
class HybridAnswers:
    """What the device worker hands to the finishing thread: the vector legs' answers (built there,
    as a search batch's are) and the keyword legs' hits."""

    items: list[HybridItem]
    vector: Answers
    keyword: Sequence[Leg | Exception]


def run_hybrid(
    items: list[HybridItem],
    run_vector: Callable[[list[SearchItem]], Answers],
    run_keyword: Callable[[list[KeywordItem]], Sequence[Leg | Exception]],
) -> HybridAnswers:
    """Both legs of a batch of hybrid queries, on the device worker."""
    vector = run_vector([item.vector for item in items])
    return HybridAnswers(items, vector, run_keyword([item.keyword for item in items]))


def fused_hits(answers: HybridAnswers) -> list[Leg | Exception]:
    """Each query's fused hits (the hybrid queue's finish step), or the error of a leg that failed."""
    fused: list[Leg | Exception] = []
    for item, vector, keyword in zip(answers.items, answers_hits(answers.vector), answers.keyword, strict=True):
        if isinstance(vector, Exception):
            fused.append(vector)
        elif isinstance(keyword, Exception):
            fused.append(keyword)
        else:
            fused.append(fuse_legs(vector[0], keyword, item.options))  # type: ignore[arg-type]
    return fused


def fuse_legs(vector: Leg, keyword: Leg, options: Retrieval) -> Leg:
    """The two legs fused: as rows when both were read at the same library version (a row id then
    names the same chunk in both), else as ``Hit`` objects (the same hits, scores and order)."""
    if isinstance(vector, RowHits) and isinstance(keyword, RowHits) and vector.version == keyword.version:
        return fuse_rows(vector, keyword, options)
    return fuse(_as_hits(vector), _as_hits(keyword), options)


def _as_hits(leg: Any) -> list[Hit]:
    return leg.hits() if isinstance(leg, RowHits) else leg or []  # type: ignore[no-any-return]
