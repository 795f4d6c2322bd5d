"""Routes: /health, /ready, /metrics (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from arrwdb.server.deps import engine_of
from arrwdb.server.errors import arrwdb_error_response
from arrwdb.server.responses import JSON

router = APIRouter(tags=["system"])


@router.get("/health")
async def health() -> Response:
    return JSON({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> Response:
    engine = engine_of(request)
    try:
        engine.check_ready()
    except Exception as exc:  # NotReady: report it in the API.md error shape
        from arrwdb.errors import NotReady

        return arrwdb_error_response(exc if isinstance(exc, NotReady) else NotReady(str(exc)))
    return JSON({"status": "ready", "device": str(engine.device), "libraries": len(engine.libraries)})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    engine = engine_of(request)
    telemetry = engine.telemetry
    telemetry.device_busy.set(engine.worker.busy_fraction())
    if engine.device.type == "cuda":
        import torch

        telemetry.gpu_memory.set(torch.cuda.memory_allocated(engine.device))
    return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)
