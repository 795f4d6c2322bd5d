"""The FastAPI application factory and ``serve``."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from arrwdb import __version__, thread_priority
from arrwdb.config import Settings
from arrwdb.engine import EmbedderFactory, Engine
from arrwdb.errors import InvalidInput
from arrwdb.server import admin, documents, libraries, schemas, search, system
from arrwdb.server.admission import AdmissionDoor, AdmissionGate
from arrwdb.server.auth import KeyRing
from arrwdb.server.auth_startup import start_auth
from arrwdb.server.docs_page import install_docs
from arrwdb.server.errors import install_error_handlers
from arrwdb.server.fastpath import ArrwdbApp, install_hot_path
from arrwdb.server.memdebug import install_memory_debug
from arrwdb.server.middleware import BodyLimit, HttpMetrics
from arrwdb.server.protocol import guarded_protocol
from arrwdb.server.ratelimit import RateLimiter

log = logging.getLogger("arrwdb.server")


def create_app(
    settings: Settings, embedder_factory: EmbedderFactory | None = None, *, freeze_gc: bool = False
) -> FastAPI:
    """``freeze_gc``: once start-up has loaded, move every object alive into the GC's permanent
    generation (``serve`` does; see ``_freeze_gc_when_ready``)."""
    thread_priority.configure(settings.worker_priority)  # before the engine starts its threads
    engine = Engine(settings, embedder_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        freezer = asyncio.create_task(_freeze_gc_when_ready(engine)) if freeze_gc else None
        # Minted keys, whether auth is on, and the start-up lines that say so (auth_startup.py).
        await start_auth(app.state.keyring, engine.store, settings)
        try:
            yield
        finally:
            if freezer is not None:
                freezer.cancel()
            await engine.stop()  # stops the device thread, or every SIGTERM would wait on it

    app = ArrwdbApp(
        title="arrwdb",
        version=__version__,
        description="Vector search with micro-batched embedding and search on one device worker.",
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.keyring = KeyRing(settings.api_key_list(), settings.admin_key.strip(), settings.auth_enabled())
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s > 0 else None
    )
    install_error_handlers(app)
    for module in (system, libraries, documents, search, admin):
        app.include_router(module.router)
    if settings.tracemalloc:  # debug only: off by default (see memdebug.py)
        install_memory_debug(app, settings.tracemalloc)
    app.state.admission_door = AdmissionDoor(lambda: getattr(engine, "scheduler", None), engine.telemetry)
    layers = _middlewares(settings, engine, app.state.admission_door)
    for middleware, options in layers:
        app.add_middleware(middleware, **options)
    install_hot_path(app, lambda endpoint: _wrapped(endpoint, layers))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    install_docs(app)  # /docs from packaged assets, and the API-key security scheme (docs_page.py)
    return app


# While the documents' metadata loads after /ready, what it made so far leaves the GC this often.
_LOAD_FREEZE_S = 0.25


async def _freeze_gc_when_ready(engine: Engine) -> None:
    """After start-up, take its objects (torch, transformers, FastAPI, the loaded libraries: ~430k in
    all) out of the cyclic GC's scans.  Under load each full collection otherwise walked all of them:
    ~230 ms with the GIL held, 1.2 s of every 4 s of a batched search load on 2 cores.  Frozen objects
    are still freed by reference counting (a deleted library's index is: no cycles hold it); only
    cyclic garbage among them would stay, so each freeze follows a collection.

    The documents' metadata loads after /ready (``DocumentLoader``): millions of objects for millions
    of documents, and every 25% the heap grew, a full collection walked all of them (searches stalled
    for 300-500 ms at a time after /ready on 1M documents).  So the start-up objects are frozen at
    /ready, and what the load made since is frozen every ``_LOAD_FREEZE_S`` after collecting only the
    young generations (cheap: they hold what was made since the last freeze)."""
    while not engine.ready:  # polled: cancelling this at shutdown must not cancel the loading itself
        if engine.load_error is not None:
            return
        await asyncio.sleep(0.25)
    gc.collect()
    gc.freeze()
    loading = asyncio.ensure_future(engine.documents.wait_all())
    try:
        while not loading.done():
            await asyncio.wait({loading}, timeout=_LOAD_FREEZE_S)
            gc.collect(1)
            gc.freeze()
    finally:
        loading.cancel()  # cancelled at shutdown: it waits on shielded futures, so the load goes on
    started = time.perf_counter()
    gc.collect()  # garbage frozen would never be collected: only live objects go
    gc.freeze()
    engine.telemetry.gc_frozen_objects.set(gc.get_freeze_count())  # benchmarks wait for this
    log.info(
        "moved %d start-up objects out of the cyclic GC in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000.0,
    )


Middleware = tuple[Any, dict[str, Any]]  # (ASGI middleware class, its options)


def _middlewares(settings: Settings, engine: Engine, door: AdmissionDoor) -> list[Middleware]:
    """arrwdb's middlewares, innermost first: the FastAPI stack and the hot path both get these."""
    layers: list[Middleware] = [
        (BodyLimit, {"max_bytes": settings.max_request_bytes}),
        # Inside the metrics (its 429s are counted by route), outside everything else (see admission.py).
        (AdmissionGate, {"door": door}),
        (HttpMetrics, {"telemetry": engine.telemetry}),
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


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the request models, which routes parse themselves (see body.py)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (*schemas.REQUEST_MODELS, *admin.REQUEST_MODELS):
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


# How long a thread that wants the GIL waits before it asks the holder to drop it (Python's default:
# 5 ms).  The device worker needs the GIL for moments between GIL-free FAISS and torch calls, and the
# event loop and the finishing thread hold it in bursts: at 5 ms each such moment could cost the
# device worker several milliseconds.  At 0.5 ms, 64 clients of 64-query HNSW searches on 2 cores
# (GloVe, ef_search 32): 11.7k-12.1k -> 12.6k-14.5k queries/s (bench/results, PERFORMANCE.md).
GIL_SWITCH_INTERVAL_S = 0.0005

# The cyclic GC's thresholds (Python's: 700, 10, 10).  A young collection runs once 700 more container
# objects live than at the last one, and a request in flight holds dozens (its coroutines, futures,
# contexts, timers): under load the loop's population swings by thousands as batches complete and
# refill, so the GC ran ~150 young, ~13 middle and ~1 full collections a second, on the event loop,
# while the device's scans kept the memory bus busy: middle ones took 2-3 ms (up to 18), full ones 7-14
# ms, and nearly every stretch of 429s slower than 5 ms began at one (overload on 2 cores, gc.callbacks
# timed against the refusals' send times).  At 20,000 one runs every few seconds; memory stays
# bounded (a young collection still follows every 20,000 objects of uncollected garbage).
GC_THRESHOLDS = (20_000, 20, 20)


def serve(settings: Settings) -> None:
    import uvicorn

    if not settings.auth_enabled() and not is_loopback(settings.host):
        raise InvalidInput(
            f"refusing to listen on {settings.host} without API keys: set ARRWDB_API_KEYS or ARRWDB_ADMIN_KEY "
            "(auth may be off only on a loopback address)"
        )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)
    app = create_app(settings, freeze_gc=True)
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings, app.state.admission_door))


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
