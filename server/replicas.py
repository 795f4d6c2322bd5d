"""Routes: a shard's copies, under ``--ray`` (docs/SCALING.md, Replicas): add one on another engine
(it bootstraps from the primary, then joins the in-sync set) or remove one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from arrwdb.server import schemas
from arrwdb.server.auth import tenant
from arrwdb.server.body import openapi_body, parse_body
from arrwdb.server.deps import api_of
from arrwdb.server.responses import JSON

router = APIRouter(prefix="/v1/libraries/{library}/shards/{shard}/replicas", tags=["libraries"])


@router.post(
    "",
    status_code=202,
    responses={202: {"model": schemas.ShardLayout}},
    openapi_extra=openapi_body(schemas.ReplicaAdd),
)
async def add_replica(library: str, shard: int, request: Request, tenant: str = Depends(tenant)) -> Response:
    """A new copy of the shard on ``engine``: listed at once, in sync once it holds every write (202)."""
    body = await parse_body(request, schemas.ReplicaAdd)
    layout = await api_of(request).change_replicas(tenant, library, shard, body.engine, add=True)
    return JSON(layout, status_code=202)


@router.delete("/{engine}", responses={200: {"model": schemas.ShardLayout}})
async def remove_replica(
    library: str, shard: int, engine: str, request: Request, tenant: str = Depends(tenant)
) -> Response:
    """The shard's copy on ``engine`` removed (not its primary)."""
    return JSON(await api_of(request).change_replicas(tenant, library, shard, engine, add=False))
