"""Which side answers a search batch's hits: the library's memory whenever no query wants text or no
hit's document has one, the store (one query for the batch) only for hits that carry a text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arrwdb.engine.search_batch import SearchItem, is_short, run_search_batch
from arrwdb.library.filters import parse_filter
from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.library.library import LibraryState
from arrwdb.records import AppliedWrite, HitRow, LibraryRecord
from arrwdb.runtime.tuning import SHORT_SEARCH_EXACT_VALUES, SHORT_SEARCH_QUERIES

DIM = 4


class StoreSpy:
    """Stands in for the store's hit lookup only, recording which rows were asked for."""

    def __init__(self, rows: dict[int, HitRow]) -> None:
        self.rows = rows
        self.asked: list[list[int]] = []

    def hit_rows(self, row_ids: list[int], include_text: bool) -> dict[int, HitRow]:
        self.asked.append(list(row_ids))
        return {row: self.rows[row] for row in row_ids if row in self.rows}


def _write(doc_id: str, row: int, has_text: bool) -> AppliedWrite:
    vector = np.zeros((1, DIM), dtype=np.float32)
    vector[0, row % DIM] = 1.0
    return AppliedWrite("lib", doc_id, (), (row,), vector, {"row": row}, seq=row, has_text=has_text)


def _items(include_text: bool) -> list[SearchItem]:
    """A block of two queries and a lone one: three hit lists."""
    query = SearchInput(None, None, 4, None, "", include_text, {})
    eye = np.eye(DIM, dtype=np.float32)
    return [SearchItem("lib", eye[:2], query), SearchItem("lib", eye[2:3], query)]


def _answers(results: list) -> list[list[Hit]]:
    """The hit lists of every query of every item, in order."""
    assert not any(isinstance(result, Exception) for result in results)
    return [hits for result in results for hits in result]


@pytest.fixture
def state() -> LibraryState:
    state = LibraryState(LibraryRecord("lib", "t", "lib", DIM, "brute_force", "cosine", {}, "now"), torch.device("cpu"))
    state.apply([_write(f"v{row}", row, has_text=False) for row in range(1, 4)])
    return state


def test_text_less_hits_come_from_memory_even_with_include_text(state: LibraryState) -> None:
    store = StoreSpy({})
    answers = _answers(run_search_batch({"lib": state}, store, _items(include_text=True)).hits())  # type: ignore[arg-type]
    assert store.asked == []
    assert len(answers) == 3 and all(isinstance(hits, list) and len(hits) == 3 for hits in answers)
    assert {hit.document_id for hits in answers for hit in hits} == {"v1", "v2", "v3"}  # type: ignore[union-attr]
    hits = [hit for answer in answers for hit in answer]  # type: ignore[union-attr]
    assert all(hit.text is None and hit.metadata == {"row": int(hit.document_id[1:])} for hit in hits)


def test_a_hit_with_text_sends_the_batch_to_the_store(state: LibraryState) -> None:
    state.apply([_write("t4", 4, has_text=True)])
    rows = {row: HitRow(row, f"v{row}", 0, None, None, {"row": row}) for row in range(1, 4)}
    rows[4] = HitRow(4, "t4", 0, None, "its text", {"row": 4})
    store = StoreSpy(rows)
    answers = _answers(run_search_batch({"lib": state}, store, _items(include_text=True)).hits())  # type: ignore[arg-type]
    assert store.asked == [[1, 2, 3, 4]]
    texts = {hit.document_id: hit.text for hits in answers for hit in hits}  # type: ignore[union-attr]
    assert texts == {"v1": None, "v2": None, "v3": None, "t4": "its text"}
    # Without include_text the same hits come from memory.
    store.asked.clear()
    run_search_batch({"lib": state}, store, _items(include_text=False)).hits()  # type: ignore[arg-type]
    assert store.asked == []
    # The text goes away with a rewrite that has none: memory again.
    state.apply([AppliedWrite("lib", "t4", (4,), (5,), np.ones((1, DIM), np.float32), {}, seq=9, has_text=False)])
    run_search_batch({"lib": state}, store, _items(include_text=True)).hits()  # type: ignore[arg-type]
    assert store.asked == []


WIDE = 384


def _wide_state(index_type: str, rows: int) -> LibraryState:
    """A library of ``rows`` rows of WIDE dimensions, one document holding them all."""
    state = LibraryState(LibraryRecord("w", "t", "w", WIDE, index_type, "cosine", {}, "now"), torch.device("cpu"))
    vectors = np.random.default_rng(0).standard_normal((rows, WIDE)).astype(np.float32)
    state.apply([AppliedWrite("w", "doc", (), tuple(range(1, rows + 1)), vectors, {"row": 1}, seq=1)])
    return state


def test_a_short_search_is_few_queries_with_default_parameters_over_few_exact_rows() -> None:
    plain = SearchInput(None, None, 4, None, "", False, {})
    at_bound = _wide_state("brute_force", SHORT_SEARCH_EXACT_VALUES // WIDE)
    past_bound = _wide_state("brute_force", SHORT_SEARCH_EXACT_VALUES // WIDE + 1)

    def short(state: LibraryState, query: SearchInput, queries: int, library: str = "w") -> bool:
        return is_short({"w": state}, [SearchItem(library, np.ones((queries, WIDE), np.float32), query)])

    assert short(at_bound, plain, 1) and short(at_bound, plain, SHORT_SEARCH_QUERIES)
    assert not short(at_bound, plain, SHORT_SEARCH_QUERIES + 1)
    assert not short(at_bound, SearchInput(None, None, 4, None, "", False, {"ef_search": 64}), 1)
    assert short(at_bound, plain, 1, library="gone")  # answered at once: not found
    assert not short(past_bound, plain, 1)  # the exact scan is the device worker's


def test_a_filtered_search_counts_every_row_of_an_ann_library_as_exact() -> None:
    state = _wide_state("hnsw", SHORT_SEARCH_EXACT_VALUES // WIDE + 1)
    state.index.exact_rows = lambda: 0  # type: ignore[method-assign]  # as if every row were in the graph
    vector = np.ones((1, WIDE), np.float32)
    plain = SearchInput(None, None, 4, None, "", False, {})
    filtered = SearchInput(None, None, 4, parse_filter({"row": 1}), '{"row":1}', False, {})
    assert is_short({"w": state}, [SearchItem("w", vector, plain)])
    assert not is_short({"w": state}, [SearchItem("w", vector, filtered)])
