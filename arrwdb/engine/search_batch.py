"""One search batch on the device worker: group the items that share a filter and search parameters,
search each group with one index call, then fill in the hits' document fields: from the library's
memory when no query wants text or no hit's document has one, else with one store query for the batch.
An item is a block of queries from one request that share k, filter, parameters and include_text (a
lone query is a block of one): it costs one queue slot and one result, however many queries it holds.
A group that runs out of GPU memory is searched in halves instead (arrwdb.runtime.device.split_on_oom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from arrwdb.errors import NotFound
from arrwdb.library.hits_json import HitsJSON, queries_json
from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.library.library import HitFields, LibraryState
from arrwdb.library.row_hits import RowHits
from arrwdb.runtime.device import split_on_oom
from arrwdb.runtime.tuning import SHORT_SEARCH_EXACT_VALUES, SHORT_SEARCH_QUERIES
from arrwdb.store.store import Store

Found = tuple[np.ndarray, np.ndarray]  # (scores, ids), one row per query of an item
# One query's hits: objects, the API's JSON (SearchInput.json) or rows (SearchInput.rows).
QueryHits = list[Hit] | HitsJSON | RowHits
ItemHits = list[QueryHits] | Exception  # an item's answer: the hits of each of its queries, or its error


@dataclass(frozen=True, eq=False)
class SearchItem:
    library_id: str
    vectors: np.ndarray  # float32 [queries, dimension]
    query: SearchInput  # k, filter, params and include_text of every one of them

    @property
    def rows(self) -> int:
        return len(self.vectors)


def is_short(libraries: dict[str, LibraryState], items: list[SearchItem]) -> bool:
    """Whether a search batch is brief enough for the event loop to run it itself (QueueSpec.short):
    few queries, default search parameters, and a small exact share (a filter may make every row of
    the library exact).  For CPU engines only: on a GPU the loop's thread would wait for the device."""
    if sum(item.rows for item in items) > SHORT_SEARCH_QUERIES or any(item.query.params for item in items):
        return False
    state = libraries.get(items[0].library_id)
    if state is None:
        return True  # answered at once: library not found
    filtered = any(item.query.filter is not None for item in items)
    rows = len(state.index) if filtered else state.index.exact_rows()
    return rows * state.record.dimension <= SHORT_SEARCH_EXACT_VALUES


def run_search_batch(libraries: dict[str, LibraryState], store: Store, items: list[SearchItem]) -> Answers:
    """Search on the device worker.  Returns what gives, for each item, the hits of each of its
    queries: ``answers_hits`` builds them from a snapshot of the library's fields (off the device
    worker, while it runs the next batch), or holds them already when the store had to answer."""
    state = libraries.get(items[0].library_id)
    as_json = [item.query.json for item in items]
    if state is None:
        return ReadyAnswers([NotFound(f"library {items[0].library_id!r} not found") for _ in items], as_json)
    # Items with the same filter and parameters share one index call (one mask, one matmul).
    groups: dict[tuple[str, bytes], list[int]] = {}
    for position, item in enumerate(items):
        key = (item.query.filter_key, orjson.dumps(item.query.params, option=orjson.OPT_SORT_KEYS))
        groups.setdefault(key, []).append(position)
    found: list[Found] = [(np.empty((0, 0), np.float32), np.empty((0, 0), np.int64))] * len(items)
    for positions in groups.values():
        first = items[positions[0]].query
        k = max(items[p].query.k for p in positions)
        vectors = [items[p].vectors for p in positions]
        queries = vectors[0] if len(vectors) == 1 else np.concatenate(vectors)
        scores, ids = split_on_oom(
            lambda start, stop, queries=queries, k=k, first=first: state.search(
                queries[start:stop], k, first.filter, first.filter_key, first.params
            ),
            len(queries),
            _stack,
            "search batch",
        )
        offset = 0
        for position in positions:
            item = items[position]
            rows, wanted = slice(offset, offset + item.rows), item.query.k
            found[position] = (scores[rows, :wanted], ids[rows, :wanted])
            offset += item.rows
    include_text = any(item.query.include_text for item in items)
    if state.documents_loaded:
        fields = state.hit_fields(np.concatenate([ids.ravel() for _, ids in found]).tolist())
        if not include_text or not state.any_text(fields):
            # Every field of a hit without text is in the library's memory (a third of a search batch's
            # time went into the SQLite fetch below), and so is the text of a document without one.
            return SnapshotAnswers(found, fields, as_json, state, [item.query.rows for item in items], state.version)
    return ReadyAnswers(_hits_from_store(store, items, found, include_text), as_json)


@dataclass(frozen=True)
class ReadyAnswers:
    """Answers already built on the device worker: errors, or hits with texts from the store (those
    wanted as JSON are rendered on the finishing thread)."""

    answers: list[ItemHits]
    as_json: list[bool]  # per item: its query's SearchInput.json

    def hits(self) -> list[ItemHits]:
        return [
            [HitsJSON.of(hits) for hits in answer] if wanted and not isinstance(answer, Exception) else answer
            for answer, wanted in zip(self.answers, self.as_json, strict=True)
        ]


@dataclass(frozen=True)
class SnapshotAnswers:
    """Answers to build (on the finishing thread) from the scores and a snapshot of the hits' fields:
    ``Hit`` objects, or the API's JSON written from the rows' own (arrwdb.library.hits_json)."""

    found: list[Found]
    fields: HitFields
    as_json: list[bool]  # per item: its query's SearchInput.json
    state: LibraryState  # counts the hit JSON its rows keep
    as_rows: list[bool]  # per item: its query's SearchInput.rows
    version: int  # the library's version the fields were read at

    def hits(self) -> list[ItemHits]:
        results: list[ItemHits] = []
        at = 0
        for (scores, ids), wanted, as_rows in zip(self.found, self.as_json, self.as_rows, strict=True):
            item_scores = scores.tolist()
            if as_rows:
                results.append(self._rows(item_scores, ids.tolist(), at))
                at += scores.size
                continue
            if wanted:
                rendered, added = queries_json(self.fields.entries, item_scores, at)
                self.state.hit_json_added += added  # only this thread adds
                results.append(rendered)
                at += scores.size
                continue
            item_hits: list[QueryHits] = []
            for query_scores in item_scores:
                item_hits.append(self.fields.hits(query_scores, at))
                at += len(query_scores)
            results.append(item_hits)
        return results

    def _rows(self, item_scores: list[list[float]], item_ids: list[list[int]], at: int) -> list[QueryHits]:
        """Each query's hits as rows (arrwdb.library.row_hits): empty slots and rows no longer live left out."""
        entries = self.fields.entries
        found: list[QueryHits] = []
        for scores, ids in zip(item_scores, item_ids, strict=True):
            kept = [n for n in range(len(ids)) if entries[at + n] is not None]
            found.append(
                RowHits(
                    [ids[n] for n in kept], [entries[at + n] for n in kept], [scores[n] for n in kept], self.version
                )
            )
            at += len(ids)
        return found


Answers = ReadyAnswers | SnapshotAnswers


def answers_hits(answers: Answers) -> list[ItemHits]:
    """For each item of the batch, the hits of each of its queries (the search queue's finish step)."""
    return answers.hits()


def _hits_from_store(store: Store, items: list[SearchItem], found: list[Found], include_text: bool) -> list[ItemHits]:
    """Hits with their chunk's text, or before the library's documents are in memory: one store query
    for the whole batch."""
    every_id = np.concatenate([ids.ravel() for _, ids in found])
    all_ids = np.unique(every_id[every_id >= 0]).tolist()  # sorted, distinct, Python ints
    rows = store.hit_rows(all_ids, include_text)
    results: list[ItemHits] = []
    for item, (item_scores, item_ids) in zip(items, found, strict=True):
        with_text = item.query.include_text
        item_hits = []
        for scores, ids in zip(item_scores.tolist(), item_ids.tolist(), strict=True):
            hits = []
            for score, row_id in zip(scores, ids, strict=True):
                row = rows.get(row_id) if row_id >= 0 else None
                if row is None:  # an empty slot, or a row deleted between search and fetch
                    continue
                text = row.text if with_text else None
                hits.append(Hit(row.doc_id, row.chunk_index, score, row.title, text, row.metadata))
            item_hits.append(hits)
        results.append(item_hits)
    return results


def _stack(parts: list[Found]) -> Found:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
