"""How a search request's queries become scheduler items: checked once (as one matrix when they all
carry vectors, with the same errors as one by one), then grouped into blocks of queries that share k,
filter, parameters and include_text, in order, at most ARRWDB_MAX_BATCH_SIZE queries each."""

from __future__ import annotations

import numpy as np
import pytest

from arrwdb.errors import InvalidInput
from arrwdb.library.inputs import SearchInput
from arrwdb.library.search_plan import query_blocks, query_vectors, stacked
from arrwdb.library.validation import check_vector
from arrwdb.records import LibraryRecord

DIM = 8
RECORD = LibraryRecord("lib", "t", "lib", DIM, "hnsw", "cosine", {}, "now")


def _vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIM)


def _query(
    k: int = 10, key: str = "", include_text: bool = False, params: dict | None = None, seed: int = 0
) -> SearchInput:
    return SearchInput(None, _vector(seed), k, None, key, include_text, params or {})


def test_blocks_group_what_queries_share_in_order_of_first_appearance():
    queries = [
        _query(k=5),
        _query(k=10),
        _query(k=5),
        _query(k=5, key='{"g":1}'),
        _query(k=5, params={"ef_search": 64}),
        _query(k=5, include_text=True),
        _query(k=5, params={"ef_search": 64}),
        _query(k=5),
    ]
    assert query_blocks(queries, list(range(len(queries))), 256) == [[0, 2, 7], [1], [3], [4, 6], [5]]


def test_blocks_hold_at_most_the_batch_size_and_only_the_positions_asked_for():
    queries = [_query() for _ in range(10)]
    assert query_blocks(queries, [0, 1, 2, 3, 4, 6, 8, 9], 3) == [[0, 1, 2], [3, 4, 6], [8, 9]]
    # ARRWDB_MAX_BATCH_SIZE=1 (batching off): one query per item, as before blocks existed.
    assert query_blocks(queries, [0, 1, 2], 1) == [[0], [1], [2]]


def test_a_request_of_vectors_is_checked_as_one_matrix_with_the_same_result():
    queries = [_query(seed=i) for i in range(20)]
    vectors = query_vectors(RECORD, queries, 384)
    for query, vector in zip(queries, vectors, strict=True):
        expected = check_vector(query.embedding, DIM, "cosine", "query")
        assert vector is not None and vector.dtype == np.float32
        np.testing.assert_array_equal(vector, expected)
    block = stacked([vectors[i] for i in (3, 4, 5)])  # type: ignore[misc]
    assert block.shape == (3, DIM) and block.dtype == np.float32
    assert stacked([vectors[7]]).shape == (1, DIM)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(DIM), "queries\\[3\\].embedding is a zero vector"),
        (np.full(DIM, np.inf), "queries\\[3\\].embedding must contain finite numbers"),
        (np.full(DIM, 1e300), "queries\\[3\\].embedding must contain finite numbers"),
        (np.ones(DIM + 1), "queries\\[3\\].embedding has dimension 9"),
    ],
)
def test_the_bad_vector_of_a_request_is_named(bad: np.ndarray, message: str):
    queries = [_query(seed=i) for i in range(6)]
    queries[3] = SearchInput(None, bad, 10, None, "", False, {})
    with pytest.raises(InvalidInput, match=message):
        query_vectors(RECORD, queries, 384)


def test_text_queries_wait_for_the_model_and_need_its_dimension():
    text = SearchInput("a question", None, 10, None, "", False, {})
    vectors = query_vectors(RECORD, [_query(), text], DIM)
    assert vectors[0] is not None and vectors[1] is None
    with pytest.raises(InvalidInput, match="not the model's: search it with an embedding"):
        query_vectors(RECORD, [_query(), text], 384)
    with pytest.raises(InvalidInput, match=r"queries\[1\]\.k must be an integer"):
        query_vectors(RECORD, [_query(), SearchInput(None, _vector(1), 0)], 384)
