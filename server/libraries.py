"""Routes: /v1/libraries."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of
from arrwdb.server.responses import JSON

router = APIRouter(prefix="/v1/libraries", tags=["libraries"])


@router.post(
    "",
    status_code=201,
    responses={201: {"model": schemas.Library}},
    openapi_extra=openapi_body(schemas.LibraryCreate),
)
async def create_library(request: Request, tenant: str = Depends(tenant)) -> Response:
    body = await parse_body(request, schemas.LibraryCreate)
    library = await api_of(request).create_library(
        tenant,
        body.name,
        body.dimension,
        body.index_type,
        body.metric,
        body.index_params or {},
        body.model,
        shards=body.shards,
        replicas=body.replicas,
    )
    return JSON(library, status_code=201)


@router.get("", responses={200: {"model": schemas.LibraryList}})
async def list_libraries(request: Request, tenant: str = Depends(tenant)) -> Response:
    return JSON({"libraries": await api_of(request).list_libraries(tenant)})


@router.get("/{library}", responses={200: {"model": schemas.Library}})
async def get_library(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    return JSON(await api_of(request).get_library(tenant, library))


@router.delete("/{library}", status_code=204)
async def delete_library(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    await api_of(request).delete_library(tenant, library)
    return Response(status_code=204)


@router.get("/{library}/statistics", responses={200: {"model": schemas.Statistics}})
async def statistics(library: str, request: Request, tenant: str = Depends(tenant)) -> Response:
    return JSON(await api_of(request).statistics(tenant, library))
