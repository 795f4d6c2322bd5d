"""Routes: /health, /ready, /metrics (no key needed), /v1/cluster."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from arrwdb.errors import ArrwdbError
from arrwdb.server.auth import tenant
from arrwdb.server.deps import api_of
from arrwdb.server.errors import arrwdb_error_response
from arrwdb.server.responses import JSON

router = APIRouter(tags=["system"])


@router.get("/health")
async def health() -> Response:
    return JSON({"status": "ok", "pid": os.getpid()})  # which process answered: one of several HTTP workers


@router.get("/ready")
async def ready(request: Request) -> Response:
    try:
        return JSON(await api_of(request).ready())
    except ArrwdbError as exc:  # NotReady: reported in the API.md error shape
        return arrwdb_error_response(exc)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """The whole server's metrics in one scrape: the engine's, and (with HTTP worker processes) every
    worker's HTTP figures added up (``server/http_telemetry.py``)."""
    engine_text = await api_of(request).metrics()
    merge = getattr(request.app.state, "merge_metrics", None)
    body = engine_text if merge is None else merge(engine_text)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/cluster")
async def cluster(request: Request, _tenant: str = Depends(tenant)) -> Response:
    """The engines, the node and device of each, and the shards each holds (one engine, no shards,
    without Ray)."""
    return JSON(await api_of(request).cluster())
