"""The FastAPI application: with its engine in this process (``create_app``), or in an HTTP worker
process whose engine is the engine process (``create_worker_app``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from arrwdb import __version__
from arrwdb.config import Settings
from arrwdb.runtime import thread_priority
from arrwdb.runtime.gc_tuning import freeze_gc_when_ready
from arrwdb.runtime.ratelimit import RateLimiter
from arrwdb.server import (
    admin,
    console,
    documents,
    libraries,
    openai_api,
    openapi,
    replicas,
    rerank,
    schemas,
    search,
    system,
)
from arrwdb.server.admission import Admission, AdmissionDoor, AdmissionGate
from arrwdb.server.auth import KeyRing
from arrwdb.server.auth_startup import start_auth
from arrwdb.server.docs_page import install_docs
from arrwdb.server.errors import install_error_handlers
from arrwdb.server.fastpath import ArrwdbApp, install_hot_path
from arrwdb.server.memdebug import install_memory_debug
from arrwdb.server.middleware import BodyLimit, HttpMetrics
from arrwdb.server.protocol import guarded_protocol

if TYPE_CHECKING:
    from arrwdb.engine.api import EngineAPI
    from arrwdb.engine.core import EmbedderFactory

log = logging.getLogger("arrwdb.server")


def create_app(
    settings: Settings, embedder_factory: EmbedderFactory | None = None, *, freeze_gc: bool = False
) -> FastAPI:
    """An HTTP server with its engine in this process (tests, benchmarks, ``--workers 0``).
    ``freeze_gc``: once start-up has loaded, move every object alive into the GC's permanent generation
    (``serve`` does; see ``arrwdb.runtime.gc_tuning``)."""
    from arrwdb.engine.api import LocalEngine
    from arrwdb.engine.core import Engine

    thread_priority.configure(settings.worker_priority)  # before the engine starts its threads
    engine = Engine(settings, embedder_factory)
    api = LocalEngine(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        freezer = asyncio.create_task(freeze_gc_when_ready(engine)) if freeze_gc else None
        # Minted keys, whether auth is on, and the start-up lines that say so (auth_startup.py).
        await start_auth(app.state.keyring, engine.store, settings)
        try:
            yield
        finally:
            if freezer is not None:
                freezer.cancel()
            await engine.stop()  # stops the device thread, or every SIGTERM would wait on it

    limiter = None
    if settings.rate_limit_per_s > 0:
        limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app = build_app(settings, api, engine.telemetry, lambda: getattr(engine, "scheduler", None), lifespan, limiter)
    app.state.engine = engine
    return app


def create_worker_app(
    settings: Settings, endpoint: str, board_path: Path, metrics_dir: str, auth_enabled: bool, workers: int = 1
) -> FastAPI:
    """An HTTP worker process's server: its engine is the engine process at ``endpoint``, its figures
    go to ``metrics_dir`` (Prometheus's multiprocess folder, set in this process's environment);
    ``auth_enabled`` as the parent decided it from the store (server/auth_startup.py); ``workers``: how
    many share the engine's queue (each admits its share of ``ARRWDB_MAX_QUEUE``)."""
    from arrwdb.ipc.board import Board
    from arrwdb.ipc.remote import RemoteEngine
    from arrwdb.server.admission import BoardAdmission
    from arrwdb.server.auth import MintedKeySync
    from arrwdb.server.http_telemetry import HttpTelemetry, merge_metrics

    board = Board(board_path)
    remote = RemoteEngine(endpoint, board, settings.request_timeout_ms)
    telemetry = HttpTelemetry()
    admission = BoardAdmission(board, telemetry, share=max(1, settings.max_queue // workers))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await remote.start()
        try:
            yield
        finally:
            await remote.stop()

    app = build_app(settings, remote, telemetry, lambda: admission, lifespan, None)
    app.state.keyring.enabled = auth_enabled
    app.state.key_sync = MintedKeySync(app.state.keyring, remote, lambda: board.keys)
    app.state.remote_rate_limit = settings.rate_limit_per_s > 0  # kept by the engine, for every worker
    app.state.merge_metrics = lambda text: merge_metrics(text, metrics_dir)
    return app


def build_app(
    settings: Settings,
    api: EngineAPI,
    telemetry: Any,
    admission_of: Callable[[], Admission | None],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    limiter: RateLimiter | None,
) -> FastAPI:
    app = ArrwdbApp(
        title="arrwdb",
        version=__version__,
        description="Vector search with micro-batched embedding and search on one device worker.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api = api
    app.state.telemetry = telemetry
    app.state.keyring = KeyRing(settings.api_key_list(), settings.admin_key.strip(), settings.auth_enabled())
    app.state.key_sync = None
    app.state.rate_limiter = limiter
    app.state.remote_rate_limit = False
    install_error_handlers(app)
    for module in (system, libraries, replicas, documents, search, openai_api, rerank, admin, console):
        app.include_router(module.router)
    if settings.tracemalloc:  # debug only: off by default (see memdebug.py)
        install_memory_debug(app, settings.tracemalloc)
    app.state.admission_door = AdmissionDoor(admission_of, telemetry)
    layers = _middlewares(settings, telemetry, app.state.admission_door)
    for middleware, options in layers:
        app.add_middleware(middleware, **options)
    install_hot_path(app, lambda endpoint: _wrapped(endpoint, layers))
    # /openapi.json: the schema of the server as it runs (server/openapi.py).  Routes parse their bodies
    # themselves (body.py): the request models are added to it.
    openapi.install(app, (*schemas.REQUEST_MODELS, *admin.REQUEST_MODELS), openai_api.MAX_INPUTS)
    install_docs(app)  # /docs from packaged assets (docs_page.py)
    return app


Middleware = tuple[Any, dict[str, Any]]  # (ASGI middleware class, its options)


def _middlewares(settings: Settings, telemetry: Any, door: AdmissionDoor) -> list[Middleware]:
    """arrwdb's middlewares, innermost first: the FastAPI stack and the hot path both get these."""
    layers: list[Middleware] = [
        (BodyLimit, {"max_bytes": settings.max_request_bytes}),
        # Inside the metrics (its 429s are counted by route), outside everything else (see admission.py).
        (AdmissionGate, {"door": door}),
        (HttpMetrics, {"telemetry": telemetry}),
    ]
    # CORS only when origins are configured: without it browsers keep other sites off the API.
    origins = settings.cors_origin_list()
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        cors = {
            "allow_origins": origins,
            "allow_methods": ["GET", "POST", "DELETE"],
            "allow_headers": ["Authorization", "Content-Type", "X-API-Key", "X-Request-Timeout-Ms"],
            "expose_headers": ["Retry-After", "X-Queue-Ms", "X-Compute-Ms", "X-Batch-Size"],
            "max_age": 600,
        }
        layers.append((CORSMiddleware, cors))
    return layers


def _wrapped(app: ASGIApp, layers: list[Middleware]) -> ASGIApp:
    for middleware, options in layers:
        app = middleware(app, **options)
    return app


def uvicorn_options(settings: Settings, door: AdmissionDoor | None = None) -> dict[str, Any]:
    """How ``serve`` runs uvicorn (shared with tests that run the app in-process).  ``door``: the app's
    admission door, for refusals written by the HTTP protocol (server/protocol.py); not with CORS,
    whose headers a refusal written there would lack (the app's own gate then refuses)."""
    protocol_door = None if settings.cors_origin_list() else door
    return {
        "access_log": False,  # about 16% of a small request's cost; /metrics counts requests instead
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keep_alive_s,
        # A deadline for request headers: idle or slowloris connections do not hold sockets forever.
        "http": guarded_protocol(settings.header_timeout_s, protocol_door),
    }
