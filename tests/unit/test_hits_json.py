"""Hits answered as JSON (arrwdb.library.hits_json): the bytes written from the rows' kept JSON must be the
bytes of rendering the same hits as ``Hit`` objects, whatever the documents hold."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import torch

from arrwdb.engine.search_batch import ReadyAnswers, SearchItem, run_search_batch
from arrwdb.library.hits_json import JSON_OPTIONS, HitsJSON, kept_bytes, queries_json, row_json
from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.library.library import HitFields, LibraryState, RowEntry
from arrwdb.library.result_cache import ResultCache, query_key
from arrwdb.records import AppliedWrite, LibraryRecord

DIM = 4

AWKWARD_ENTRIES = [
    RowEntry("d1", 0, None, {}),
    RowEntry("doc-2.x:y", 3, 'a "quoted" title \\ with \u00e9\u6f22\U0001f600', {"k": 'v"\\', "n": -1.5e-300}),
    RowEntry("d3", 1, "", {"tags": ["a", "b,c"], "flag": True, "big": 2**62, "score": 0.0, "x,": "0.0,"}),
    RowEntry("d4", 12, "t", {"nested-ish": [], "zero": 0, "f": 1e308}),
]


def _rendered(entries: list[RowEntry | None], scores: list[list[float]]) -> list[bytes]:
    """What rendering Hit objects gives for the same rows: the reference."""
    answers, at = [], 0
    for row in scores:
        hits = HitFields(entries).hits(row, at)
        answers.append(orjson.dumps(hits, option=JSON_OPTIONS))
        at += len(row)
    return answers


def _written(answers: list[HitsJSON]) -> list[bytes]:
    return [orjson.dumps(answer.json) for answer in answers]


def test_rows_json_is_the_hit_objects_json() -> None:
    rng = np.random.default_rng(3)
    entries: list[RowEntry | None] = [RowEntry(e.doc_id, e.chunk_index, e.title, e.metadata) for e in AWKWARD_ENTRIES]
    entries += [None, entries[1], None, entries[0]]  # an empty slot, a row seen twice, a dead row
    scores = rng.standard_normal((2, 4)).astype(np.float32)
    scores[0, 0], scores[1, 3] = 1e-38, -3.4e38  # float32's extremes as Python floats
    rows = scores.tolist()
    answers, added = queries_json(entries, rows, 0)
    assert _written(answers) == _rendered(entries, rows)
    assert added == sum(kept_bytes(e) for e in entries[:4] if e is not None) > 0
    again, added_again = queries_json(entries, rows, 0)  # from the kept JSON this time
    assert _written(again) == _rendered(entries, rows) and added_again == 0


def test_a_query_without_live_hits_is_an_empty_array() -> None:
    answers, _ = queries_json([None, None, RowEntry("d", 0, None, {})], [[0.5, 0.25], [0.125]], 0)
    assert _written(answers) == [b"[]", b'[{"document_id":"d","chunk_index":0,"score":0.125,"title":null,'
                                        b'"text":null,"metadata":{}}]']  # fmt: skip


def test_a_row_is_rendered_once() -> None:
    entry = RowEntry("d9", 2, "T", {"g": 1})
    assert kept_bytes(entry) == 0
    first = row_json(entry)
    assert first == kept_bytes(entry) > len(b'{"document_id":"d9"}')
    assert row_json(entry) == 0
    assert entry == RowEntry("d9", 2, "T", {"g": 1})  # the kept JSON is not part of its value


def _write(doc_id: str, row: int, removed: tuple[int, ...] = ()) -> AppliedWrite:
    vector = np.zeros((1, DIM), dtype=np.float32)
    vector[0, row % DIM] = 1.0
    return AppliedWrite("lib", doc_id, removed, (row,), vector, {"row": row}, seq=row, has_text=False)


@pytest.fixture
def state() -> LibraryState:
    state = LibraryState(LibraryRecord("lib", "t", "lib", DIM, "brute_force", "cosine", {}, "now"), torch.device("cpu"))
    state.apply([_write(f"v{row}", row) for row in range(1, 4)])
    return state


def _items(as_json: bool) -> list[SearchItem]:
    query = SearchInput(None, None, 3, None, "", False, {}, json=as_json)
    eye = np.eye(DIM, dtype=np.float32)
    return [SearchItem("lib", eye[:2], query), SearchItem("lib", eye[1:3], query)]


def test_a_batch_answers_json_as_its_hits_render(state: LibraryState) -> None:
    objects = run_search_batch({"lib": state}, None, _items(as_json=False)).hits()  # type: ignore[arg-type]
    as_json = run_search_batch({"lib": state}, None, _items(as_json=True)).hits()  # type: ignore[arg-type]
    expected = [orjson.dumps(hits, option=JSON_OPTIONS) for item in objects for hits in item]  # type: ignore[union-attr]
    assert [orjson.dumps(hits.json) for item in as_json for hits in item] == expected  # type: ignore[union-attr]
    assert all(b'"document_id":"v' in body for body in expected)


def test_statistics_count_the_kept_json_until_the_rows_go(state: LibraryState) -> None:
    before = state.statistics()["memory_bytes"]
    run_search_batch({"lib": state}, None, _items(as_json=True)).hits()  # type: ignore[arg-type]
    kept = state.hit_json_added
    assert kept > 0 and state.statistics()["memory_bytes"] == before + kept
    state.apply([AppliedWrite("lib", f"v{row}", (row,), (), None, None, seq=10 + row) for row in range(1, 4)])
    assert state.hit_json_released == kept


def test_ready_answers_render_what_asks_for_json_and_pass_errors() -> None:
    hits = [Hit("a", 0, 0.5, None, "text", {"x": [1, 2]})]
    error = ValueError("no")
    answers = ReadyAnswers([[hits], error, [hits]], [True, True, False]).hits()
    assert isinstance(answers[0][0], HitsJSON)  # type: ignore[index]
    assert orjson.dumps(answers[0][0].json) == orjson.dumps(hits, option=JSON_OPTIONS)  # type: ignore[index, union-attr]
    assert answers[1] is error and answers[2] == [hits]


def test_the_result_cache_keeps_json_and_objects_apart() -> None:
    cache = ResultCache(1 << 20)
    vector = np.ones(DIM, dtype=np.float32)
    as_json = query_key("lib", (0, 0, -1), SearchInput(None, vector, json=True))
    objects = query_key("lib", (0, 0, -1), SearchInput(None, vector))
    assert as_json != objects
    rendered = HitsJSON(b'[{"document_id":"a"}]')
    cache.put(as_json, rendered)
    assert cache.get(as_json) is rendered and cache.get(objects) is None
    assert cache.nbytes >= rendered.nbytes
