"""One search batch on the device worker: group queries that share a filter, search each group with
one index call, then fill in the hits' document fields: from the library's memory when no query wants
text or no hit's document has one, else with one store query for the whole batch.
A group that runs out of GPU memory is searched in halves instead (arrwdb.device.split_on_oom).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from arrwdb.device import split_on_oom
from arrwdb.errors import NotFound
from arrwdb.inputs import Hit, SearchInput
from arrwdb.library import LibraryState
from arrwdb.store import Store


@dataclass(frozen=True, eq=False)
class SearchItem:
    library_id: str
    vector: np.ndarray  # float32 [dimension]
    query: SearchInput


def run_search_batch(
    libraries: dict[str, LibraryState], store: Store, items: list[SearchItem]
) -> list[list[Hit] | Exception]:
    state = libraries.get(items[0].library_id)
    if state is None:
        return [NotFound(f"library {items[0].library_id!r} not found") for _ in items]
    # Queries with the same filter and parameters share one index call (one mask, one matmul).
    groups: dict[tuple[str, bytes], list[int]] = {}
    for position, item in enumerate(items):
        key = (item.query.filter_key, orjson.dumps(item.query.params, option=orjson.OPT_SORT_KEYS))
        groups.setdefault(key, []).append(position)
    found: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, np.int64))] * len(items)
    for positions in groups.values():
        first = items[positions[0]].query
        k = max(items[p].query.k for p in positions)
        queries = np.stack([items[p].vector for p in positions])
        scores, ids = split_on_oom(
            lambda start, stop, queries=queries, k=k, first=first: state.search(
                queries[start:stop], k, first.filter, first.filter_key, first.params
            ),
            len(queries),
            _stack,
            "search batch",
        )
        for row, position in enumerate(positions):
            wanted = items[position].query.k
            found[position] = (scores[row, :wanted], ids[row, :wanted])
    include_text = any(item.query.include_text for item in items)
    if state.documents_loaded:
        row_ids = [ids.tolist() for _, ids in found]
        if not include_text or not state.any_text(row_ids):
            # Every field of a hit without text is in the library's memory (a third of a search batch's
            # time went into the SQLite fetch below), and so is the text of a document without one.
            return [
                state.hits_without_text(scores.tolist(), rows) for (scores, _), rows in zip(found, row_ids, strict=True)
            ]
    return _hits_from_store(store, items, found, include_text)


def _hits_from_store(
    store: Store, items: list[SearchItem], found: list[tuple[np.ndarray, np.ndarray]], include_text: bool
) -> list[list[Hit] | Exception]:
    """Hits with their chunk's text, or before the library's documents are in memory: one store query
    for the whole batch."""
    every_id = np.concatenate([ids for _, ids in found])
    all_ids = np.unique(every_id[every_id >= 0]).tolist()  # sorted, distinct, Python ints
    rows = store.hit_rows(all_ids, include_text)
    results: list[list[Hit] | Exception] = []
    for item, (scores, ids) in zip(items, found, strict=True):
        hits = []
        for score, row_id in zip(scores.tolist(), ids.tolist(), strict=True):
            row = rows.get(row_id) if row_id >= 0 else None
            if row is None:  # an empty slot, or a row deleted between search and fetch
                continue
            text = row.text if item.query.include_text else None
            hits.append(Hit(row.doc_id, row.chunk_index, score, row.title, text, row.metadata))
        results.append(hits)
    return results


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
