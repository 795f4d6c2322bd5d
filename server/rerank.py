"""Route: POST /v1/rerank in the shape of Cohere's, TEI's and Infinity's rerank APIs, scored by the
cross-encoder of ARRWDB_RERANK_MODEL (batched on the device like embeddings)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from arrwdb.errors import InvalidInput
from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of, deadline_of
from arrwdb.server.disconnect import unless_disconnected
from arrwdb.server.responses import JSON, timing_headers

router = APIRouter(tags=["models"])


@router.post(
    "/v1/rerank",
    responses={200: {"model": schemas.RerankResponse}},
    openapi_extra=openapi_body(schemas.RerankRequest),
)
async def rerank(request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.RerankRequest)
    if not body.query.strip():
        raise InvalidInput("query must not be empty")
    work = api_of(request).rerank(body.query, body.documents, body.model, deadline_of(request))
    scores, name, timings = await unless_disconnected(request, work, request.app.state.telemetry)
    best = np.argsort(-scores, kind="stable")[: body.top_n]
    results = []
    for i in best.tolist():
        result = {"index": i, "relevance_score": float(scores[i])}
        if body.return_documents:
            result["document"] = body.documents[i]
        results.append(result)
    headers = timing_headers(timings.queue_ms, timings.compute_ms, timings.batch_size)
    return JSON({"model": name, "results": results}, headers=headers)
