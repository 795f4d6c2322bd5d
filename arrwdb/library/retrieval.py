"""Retrieval beyond one vector search: the checks on a query's options, how many hits each leg
brings, fusing a vector and a keyword leg, and the threshold, offset and groups applied to the fused
list.  Pure functions over ``Hit`` lists: the engine side (``arrwdb.engine.retrieval_search``) runs the legs.

Fusion follows the systems users compare us with:
- RRF (Milvus, Chroma, LanceDB, Qdrant): a hit's score is ``sum(weight / (k + rank))`` over the legs
  that found it, ranks counted from 1, k = 60 by default;
- DBSF (Qdrant's distribution-based score fusion): each leg's scores are mapped to [0, 1] by the
  window mean ± 3 standard deviations of that leg's scores for the query, clipped, and summed (with
  weights).
A chunk is the same hit in both legs when its (document id, chunk index) is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import orjson

from arrwdb.errors import InvalidInput
from arrwdb.library.hits_json import JSON_OPTIONS, HitsJSON
from arrwdb.library.inputs import FUSIONS, MODES, Hit, Retrieval
from arrwdb.library.row_hits import RowHits
from arrwdb.library.validation import MAX_K, field_path
from arrwdb.store.keywords import MAX_TERMS, count_terms

MAX_GROUP_SIZE = 100
MAX_FUSION_K = 1_000_000
DEFAULT_CANDIDATES_FLOOR = 50


def check_retrieval(options: Retrieval, k: int, has_query: bool, has_embedding: bool, where: str) -> None:
    """Every rule on a query's retrieval options that needs no library (InvalidInput names the field)."""
    mode = options.mode
    if mode not in MODES:
        raise InvalidInput(f"{field_path(where, 'mode')} must be one of {', '.join(MODES)}")
    if options.keywords is not None:
        if not options.keywords.strip():
            raise InvalidInput(f"{field_path(where, 'keywords')} must not be empty")
        if mode == "vector":
            raise InvalidInput(f"{field_path(where, 'keywords')} needs mode keyword or hybrid")
        if count_terms(options.keywords) > MAX_TERMS:
            raise InvalidInput(f"{field_path(where, 'keywords')} holds more than {MAX_TERMS} distinct words")
    if mode == "keyword":
        if has_embedding:
            raise InvalidInput(
                f"{field_path(where, 'mode')} keyword searches text: give keywords or query, no embedding"
            )
        if not has_query and options.keywords is None:
            raise InvalidInput(f"{field_path(where, 'mode')} keyword needs keywords or query")
    else:
        if has_query == has_embedding:
            raise InvalidInput(f"{where or 'the query'}: give exactly one of query and embedding (or embedding_base64)")
        if mode == "hybrid" and options.keywords is None and not has_query:
            raise InvalidInput(f"{field_path(where, 'keywords')} is needed for mode hybrid with an embedding")
    if options.fusion not in FUSIONS:
        raise InvalidInput(f"{field_path(where, 'fusion.method')} must be one of {', '.join(FUSIONS)}")
    if not 1 <= options.fusion_k <= MAX_FUSION_K:
        raise InvalidInput(f"{field_path(where, 'fusion.k')} must be between 1 and {MAX_FUSION_K}")
    weights = options.weights
    if len(weights) != 2 or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise InvalidInput(f"{field_path(where, 'fusion.weights')} must be two finite numbers >= 0, not both 0")
    # A page ends at rank MAX_K (``page_k``); candidates below k + offset count as k + offset (leg_size).
    if not 0 <= options.offset < MAX_K:
        raise InvalidInput(f"{field_path(where, 'offset')} must be between 0 and {MAX_K - 1}")
    if options.candidates is not None and not 1 <= options.candidates <= MAX_K:
        raise InvalidInput(f"{field_path(where, 'candidates')} must be between 1 and {MAX_K}")
    if options.score_threshold is not None and not math.isfinite(options.score_threshold):
        raise InvalidInput(f"{field_path(where, 'score_threshold')} must be a finite number")
    if options.group_by is not None and not options.group_by:
        raise InvalidInput(f"{field_path(where, 'group_by')} must not be empty")
    if not 1 <= options.group_size <= MAX_GROUP_SIZE:
        raise InvalidInput(f"{field_path(where, 'group_size')} must be between 1 and {MAX_GROUP_SIZE}")
    if options.group_by is None and options.group_size != 1:
        raise InvalidInput(f"{field_path(where, 'group_size')} needs group_by")


def page_k(options: Retrieval | None, k: int) -> int:
    """The hits a page holds at most: ``k``, cut where the page would pass rank MAX_K (the most any
    search ranks), so that k + offset beyond it is a shorter page, not an error."""
    return k if options is None else min(k, MAX_K - options.offset)


def leg_size(options: Retrieval, k: int) -> int:
    """Hits each leg brings: ``candidates`` when given; else what the answer needs (k + offset) for a
    single leg, and max(4 (k + offset), 50) for a fused one (API.md's default).  Groups need more
    hits than groups: the legs bring k + offset groups' worth of ``group_size``, four times over."""
    wanted = k + options.offset
    if options.candidates is not None:
        return max(options.candidates, wanted)
    if options.group_by is not None:
        return min(MAX_K, max(4 * wanted * options.group_size, DEFAULT_CANDIDATES_FLOOR))
    if options.mode == "hybrid":
        return min(MAX_K, max(4 * wanted, DEFAULT_CANDIDATES_FLOOR))
    return wanted


def _key(hit: Hit) -> tuple[str, int]:
    return hit.document_id, hit.chunk_index


def fuse(vector: Sequence[Hit], keyword: Sequence[Hit], options: Retrieval) -> list[Hit]:
    """The two legs' hits as one list, best first, scored by the fusion method."""
    scores: dict[tuple[str, int], float] = {}
    hits: dict[tuple[str, int], Hit] = {}
    for leg, weight in ((vector, options.weights[0]), (keyword, options.weights[1])):
        for hit, score in zip(leg, _leg_scores([hit.score for hit in leg], weight, options), strict=True):
            key = _key(hit)
            scores[key] = scores.get(key, 0.0) + score
            hits.setdefault(key, hit)
    order = sorted(scores, key=lambda key: -scores[key])  # stable: ties keep the vector leg's order
    return [_rescored(hits[key], scores[key]) for key in order]


def fuse_rows(vector: RowHits, keyword: RowHits, options: Retrieval) -> RowHits:
    """``fuse`` of two legs read at the same library version (where a row id names the same chunk as
    its (document id, chunk index) does): the same hits, scores and order.  A leg holds a row once,
    so the vector leg's scores start the sums as they are (``0.0 + s`` is ``s``)."""
    scores = dict(zip(vector.rows, _leg_scores(vector.scores, options.weights[0], options), strict=True))
    entries = dict(zip(vector.rows, vector.entries, strict=True))
    get = scores.get
    for row, entry, score in zip(
        keyword.rows, keyword.entries, _leg_scores(keyword.scores, options.weights[1], options), strict=True
    ):
        scores[row] = get(row, 0.0) + score
        entries.setdefault(row, entry)
    # Stable, as ``fuse``'s sort by the negated score: ties keep the vector leg's order.
    order = sorted(scores, key=scores.__getitem__, reverse=True)
    return RowHits(order, [entries[row] for row in order], [scores[row] for row in order], vector.version)


def _leg_scores(scores: Sequence[float], weight: float, options: Retrieval) -> Sequence[float]:
    """One leg's contribution to each of its hits' fused scores."""
    if options.fusion == "rrf":
        return _rrf_scores(weight, options.fusion_k, len(scores))
    return [weight * s for s in _dbsf_normalised(list(scores))]


@functools.lru_cache(maxsize=256)
def _rrf_scores(weight: float, k: int, hits: int) -> tuple[float, ...]:
    return tuple(weight / (k + rank) for rank in range(1, hits + 1))


def _dbsf_normalised(scores: list[float]) -> list[float]:
    """Scores mapped onto [0, 1] by mean ± 3 standard deviations (population), clipped; a leg whose
    scores are all equal maps them to 0.5."""
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if std == 0.0:
        return [0.5] * len(scores)
    low, span = mean - 3.0 * std, 6.0 * std
    return [min(1.0, max(0.0, (s - low) / span)) for s in scores]


def _rescored(hit: Hit, score: float) -> Hit:
    return Hit(hit.document_id, hit.chunk_index, score, hit.title, hit.text, hit.metadata)


def group_keys(hit: Hit, group_by: str) -> list[Any]:
    """The groups a hit belongs to: its document, or the values of its metadata field (each string of
    a list is a group of its own, as in Qdrant); none when the hit lacks the field."""
    if group_by == "document_id":
        return [hit.document_id]
    value = hit.metadata.get(group_by)
    if value is None:
        return []
    return list(dict.fromkeys(value)) if isinstance(value, list) else [value]


def finish(hits: Sequence[Hit], options: Retrieval, k: int) -> list[Hit] | list[dict[str, Any]]:
    """The answer from a ranked list: hits under ``score_threshold`` left out, then ``offset`` hits (or
    groups) skipped, then up to ``k`` hits, or ``k`` groups of up to ``group_size`` hits each."""
    if options.score_threshold is not None:
        threshold = options.score_threshold
        hits = [hit for hit in hits if hit.score >= threshold]
    if options.group_by is None:
        return list(hits[options.offset : options.offset + k])
    # Keyed by type and value: 1, 1.0 and true are equal in Python but three groups here.
    groups: dict[tuple[str, Any], list[Hit]] = {}
    wanted = options.offset + k
    for hit in hits:
        for value in group_keys(hit, options.group_by):
            key = (type(value).__name__, value)
            members = groups.get(key)
            if members is None:
                if len(groups) >= wanted:
                    continue
                groups[key] = members = []
            if len(members) < options.group_size:
                members.append(hit)
    chosen = list(groups.items())[options.offset : wanted]
    return [{"key": key[1], "hits": members} for key, members in chosen]


def finish_rows(hits: RowHits, options: Retrieval, k: int) -> RowHits:
    """``finish`` without groups (``options.group_by`` None), of hits as rows."""
    entries, scores, rows = hits.entries, hits.scores, hits.rows
    if options.score_threshold is not None:
        threshold = options.score_threshold
        kept = [i for i, score in enumerate(scores) if score >= threshold]
        entries, scores, rows = [entries[i] for i in kept], [scores[i] for i in kept], [rows[i] for i in kept]
    page = slice(options.offset, options.offset + k)
    return RowHits(rows[page], entries[page], scores[page], hits.version)


def render(answer: list[Hit] | list[dict[str, Any]]) -> HitsJSON:
    """An answer as the API's JSON: the hits array, or the groups array."""
    return HitsJSON(orjson.dumps(answer, option=JSON_OPTIONS))
