"""Routes: search (single and batch) and /v1/embed."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from arrwdb.errors import ArrwdbError, InvalidInput
from arrwdb.library.filters import parse_filter
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import RerankInput, Retrieval, SearchInput
from arrwdb.library.retrieval import check_retrieval, page_k
from arrwdb.library.validation import check_k, check_query_params, field_path, subject
from arrwdb.runtime.timings import Timings
from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of, deadline_of, settings_of
from arrwdb.server.disconnect import unless_disconnected
from arrwdb.server.responses import JSON, timing_headers
from arrwdb.server.slowlog import log_slow_search
from arrwdb.server.vectors import client_vector, vector_field

router = APIRouter(tags=["search"])


def retrieval_of(query: schemas.Query, has_embedding: bool, where: str) -> Retrieval | None:
    """The query's retrieval options, checked; None for a plain vector search (the fast path)."""
    fields = (query.keywords, query.fusion, query.candidates, query.score_threshold, query.offset, query.group_by)
    if query.mode in (None, "vector") and query.group_size is None and all(value is None for value in fields):
        return None
    fusion = query.fusion or schemas.Fusion()
    weights = (1.0, 1.0) if fusion.weights is None else tuple(fusion.weights)
    if len(weights) != 2:
        raise InvalidInput(f"{field_path(where, 'fusion.weights')} must hold two numbers: [vector, keyword]")
    if query.fusion is not None and query.mode != "hybrid":
        raise InvalidInput(f"{field_path(where, 'fusion')} applies to mode hybrid")
    options = Retrieval(
        mode=query.mode or "vector",
        keywords=query.keywords,
        fusion=fusion.method,
        fusion_k=fusion.k,
        weights=weights,  # type: ignore[arg-type]
        candidates=query.candidates,
        score_threshold=query.score_threshold,
        offset=query.offset or 0,
        group_by=query.group_by,
        group_size=1 if query.group_size is None else query.group_size,
    )
    check_retrieval(options, query.k, query.query is not None, has_embedding, where)
    return options


def search_input(query: schemas.Query, where: str) -> SearchInput:
    embedding = client_vector(query.embedding, query.embedding_base64, where)
    retrieval = retrieval_of(query, embedding is not None, where)
    if retrieval is None and (query.query is None) == (embedding is None):
        # Paths in messages: arrwdb.library.validation.field_path ("" = the body itself).
        raise InvalidInput(
            f"{subject(where, 'the query')}: give exactly one of query and embedding (or embedding_base64)"
        )
    if query.query is not None and not query.query.strip():
        raise InvalidInput(f"{field_path(where, 'query')} must not be empty")
    check_k(query.k, where)
    try:
        filter_ = parse_filter(query.filter)
    except InvalidInput as exc:
        raise InvalidInput(field_path(where, exc.message)) from None
    params = {} if query.params is None else query.params.given()
    check_query_params(params, where)
    return SearchInput(
        query=query.query,
        embedding=embedding,
        k=page_k(retrieval, query.k),
        filter=filter_,
        filter_key="" if filter_ is None else filter_key(query.filter),
        include_text=query.include_text,
        params=params,
        json=True,  # the answer is written out as it comes: see arrwdb.library.hits_json
        where=where,
        vector_field=vector_field(query.embedding_base64),
        rerank=_rerank_input(query, where),
        retrieval=retrieval,
    )


def _rerank_input(query: schemas.Query, where: str) -> RerankInput | None:
    spec = query.rerank
    if spec is None:
        return None
    if query.query is None:
        raise InvalidInput(f"{field_path(where, 'rerank')} needs the query's text (query), not only an embedding")
    return RerankInput(spec.candidates, spec.model)


def filter_key(raw: dict[str, Any]) -> str:
    """Canonical JSON of a filter (equal filters share one mask in a batch, and one cache key).
    orjson refuses integers beyond 64 bits, which a filter may hold: those take the slower json."""
    try:
        return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def _headers(timings: Timings) -> dict[str, str]:
    return timing_headers(timings.queue_ms, timings.compute_ms, timings.batch_size)


async def _run_search(
    request: Request, route: str, tenant: str, library: str, queries: list[SearchInput], started: float
) -> tuple[list[HitsJSON], Timings]:
    """Run the search, and log it on the slow-query log when it took too long (failed ones too)."""
    threshold_ms = settings_of(request).slow_query_ms
    work = api_of(request).search(tenant, library, queries, deadline_of(request))
    try:
        results, timings = await unless_disconnected(request, work, request.app.state.telemetry)
    except ArrwdbError as exc:
        total_ms = (time.perf_counter() - started) * 1000.0
        log_slow_search(
            threshold_ms, route=route, library=library, queries=queries, timings=None, total_ms=total_ms, error=exc.type
        )
        raise
    total_ms = (time.perf_counter() - started) * 1000.0
    log_slow_search(threshold_ms, route=route, library=library, queries=queries, timings=timings, total_ms=total_ms)
    return results, timings


@router.post(
    "/v1/libraries/{library}/search",
    responses={200: {"model": schemas.SearchResponse | schemas.GroupsResponse}},
    openapi_extra=openapi_body(schemas.Query),
)
async def search(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    started = time.perf_counter()
    body = await parse_body(request, schemas.Query)
    query = search_input(body, "")
    results, timings = await _run_search(request, "search", tenant, library, [query], started)
    took_ms = (time.perf_counter() - started) * 1000.0
    # Hits come as the API's JSON (arrwdb.library.hits_json), written into the answer as they are; with
    # group_by, the groups do.
    field = "groups" if body.group_by is not None else "results"
    return JSON({field: results[0].json, "took_ms": took_ms}, headers=_headers(timings))


@router.post(
    "/v1/libraries/{library}/search/batch",
    responses={200: {"model": schemas.BatchSearchResponse}},
    openapi_extra=openapi_body(schemas.QueryBatch),
)
async def search_batch(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    started = time.perf_counter()
    body = await parse_body(request, schemas.QueryBatch)
    queries = [search_input(q, f"queries[{i}]") for i, q in enumerate(body.queries)]
    results, timings = await _run_search(request, "search_batch", tenant, library, queries, started)
    took_ms = (time.perf_counter() - started) * 1000.0
    body = {"results": [hits.json for hits in results], "took_ms": took_ms}  # hits: see above
    return JSON(body, headers=_headers(timings))


@router.post(
    "/v1/embed",
    responses={200: {"model": schemas.EmbedResponse}},
    openapi_extra=openapi_body(schemas.EmbedRequest),
)
async def embed(request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.EmbedRequest)
    for i, text in enumerate(body.texts):
        if not text.strip():
            raise InvalidInput(f"texts[{i}] must not be empty")
    work = api_of(request).embed(body.texts, deadline_of(request), body.model)
    vectors, timings = await unless_disconnected(request, work, request.app.state.telemetry)
    return JSON({"embeddings": vectors, "dimension": int(vectors.shape[1])}, headers=_headers(timings))
