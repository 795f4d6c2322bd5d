"""Routes: /v1/libraries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from arrwdb.library import LibraryState
from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import engine_of
from arrwdb.server.responses import JSON

router = APIRouter(prefix="/v1/libraries", tags=["libraries"])


def library_body(state: LibraryState) -> dict[str, Any]:
    r = state.record
    return {
        "id": r.id,
        "name": r.name,
        "dimension": r.dimension,
        "index_type": r.index_type,
        "metric": r.metric,
        "index_params": r.index_params,
        "document_count": state.document_count,
        "created_at": r.created_at,
    }


@router.post(
    "",
    status_code=201,
    responses={201: {"model": schemas.Library}},
    openapi_extra=openapi_body(schemas.LibraryCreate),
)
async def create_library(request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.LibraryCreate)
    state = await engine_of(request).create_library(
        tenant, body.name, body.dimension, body.index_type, body.metric, body.index_params or {}
    )
    return JSON(library_body(state), status_code=201)


@router.get("", responses={200: {"model": schemas.LibraryList}})
async def list_libraries(request: Request, tenant: str = Depends(tenant)) -> Response:
    engine = engine_of(request)
    engine.check_ready()
    return JSON({"libraries": [library_body(s) for s in engine.list_libraries(tenant)]})


@router.get("/{library}", responses={200: {"model": schemas.Library}})
async def get_library(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    engine = engine_of(request)
    engine.check_ready()
    return JSON(library_body(engine.library(tenant, library)))


@router.delete("/{library}", status_code=204)
async def delete_library(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    await engine_of(request).delete_library(tenant, library)
    return Response(status_code=204)


@router.get("/{library}/statistics", responses={200: {"model": schemas.Statistics}})
async def statistics(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    engine = engine_of(request)
    engine.check_ready()
    # On the device worker: the index is mutated there, and read from here it can be caught halfway
    # through an update (the crash harness saw an IndexError, a 500, under concurrent writes).
    return JSON(await engine.on_worker(lambda: engine.statistics(tenant, library)))
