"""The FastAPI application factory and ``serve``."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from arrwdb import __version__
from arrwdb.config import Settings
from arrwdb.engine import EmbedderFactory, Engine
from arrwdb.errors import InvalidInput
from arrwdb.server import documents, libraries, schemas, search, system
from arrwdb.server.auth import KeyRing
from arrwdb.server.errors import install_error_handlers
from arrwdb.server.fastpath import install_fast_routes
from arrwdb.server.middleware import BodyLimit, HttpMetrics

log = logging.getLogger("arrwdb.server")


def create_app(settings: Settings, embedder_factory: EmbedderFactory | None = None) -> FastAPI:
    engine = Engine(settings, embedder_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()  # stops the device thread, or every SIGTERM would wait on it

    app = FastAPI(
        title="arrwdb",
        version=__version__,
        description="Vector search with micro-batched embedding and search on one device worker.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.keyring = KeyRing(settings.api_key_list())
    install_error_handlers(app)
    for module in (system, libraries, documents, search):
        app.include_router(module.router)
    install_fast_routes(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(HttpMetrics, telemetry=engine.telemetry)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the request models, which routes parse themselves (see body.py)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in schemas.REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = model_schema
    app.openapi_schema = schema
    return schema


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(settings: Settings) -> None:
    import uvicorn

    if not settings.api_key_list() and not is_loopback(settings.host):
        raise InvalidInput(
            f"refusing to listen on {settings.host} without API keys: set ARRWDB_API_KEYS "
            "(auth may be off only on a loopback address)"
        )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,  # about 16% of a small request's cost; /metrics counts requests instead
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
