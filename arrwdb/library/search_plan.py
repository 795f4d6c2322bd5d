"""How a search request's queries reach the device worker: each checked once, then grouped into blocks.

A block is a run of a request's queries that share k, filter, parameters and include_text: it travels
through the scheduler as one item (one queue slot, one future, one result) and is searched as rows of
the batch's matrix.  Per-query items cost the event loop and the device worker about as much Python
as a 64-query HNSW search costs FAISS, all of it with the GIL held.
"""

from __future__ import annotations

import numpy as np
import orjson

from arrwdb.errors import InvalidInput
from arrwdb.library.inputs import SearchInput
from arrwdb.library.validation import check_k, check_query_params, check_vector, checked_rows, field_path
from arrwdb.records import LibraryRecord


def query_vectors(record: LibraryRecord, queries: list[SearchInput], model_dimension: int) -> list[np.ndarray | None]:
    """Each query's checked float32 vector, None for a text query (embedded later).  A request whose
    queries all carry vectors is checked as one matrix; check_vector names the first bad one."""
    many = len(queries) > 1
    for position, query in enumerate(queries):
        where = _where(query, position, many)
        check_k(query.k, where)
        check_query_params(query.params, where)
        if query.embedding is None and record.dimension != model_dimension:
            raise InvalidInput(
                f"library {record.name!r} has dimension {record.dimension}, not the model's: "
                "search it with an embedding"
            )
    given = [query.embedding for query in queries]
    if many and all(vector is not None and vector.shape == (record.dimension,) for vector in given):
        rows = checked_rows(np.stack(given), record.metric)  # type: ignore[arg-type]
        if rows is not None:
            return list(rows)
    checked: list[np.ndarray | None] = []
    for position, (query, vector) in enumerate(zip(queries, given, strict=True)):
        what = field_path(_where(query, position, many), query.vector_field)
        checked.append(None if vector is None else check_vector(vector, record.dimension, record.metric, what))
    return checked


def _where(query: SearchInput, position: int, many: bool) -> str:
    """The query's path in its request body (the HTTP layer says; other callers are named by position)."""
    if query.where is not None:
        return query.where
    return f"queries[{position}]" if many else ""


def query_blocks(queries: list[SearchInput], positions: list[int], max_rows: int) -> list[list[int]]:
    """``positions`` (into ``queries``) grouped by what their queries share, in order of first
    appearance, each group cut into blocks of at most ``max_rows`` (ARRWDB_MAX_BATCH_SIZE: 1 gives
    one query per block, batching off)."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for position in positions:
        query = queries[position]
        params = orjson.dumps(query.params, option=orjson.OPT_SORT_KEYS) if query.params else b""
        key = (query.k, query.filter_key, params, query.include_text, query.json, query.rows)
        groups.setdefault(key, []).append(position)
    return [group[start : start + max_rows] for group in groups.values() for start in range(0, len(group), max_rows)]


def stacked(vectors: list[np.ndarray]) -> np.ndarray:
    """One block's query vectors as a float32 matrix (a lone query's row without a copy)."""
    if len(vectors) == 1:
        return vectors[0].reshape(1, -1)
    return np.stack(vectors)
