"""``arrwdb serve --ray``: HTTP served here (or by ``--workers`` HTTP worker processes, each a frontend
of its own), the engines are Ray actors (``arrwdb.cluster``).

A frontend holds no state of its own: libraries, shard maps and API keys are in the catalog engine,
documents in the shard engines.  Several frontends (on several nodes, behind any load balancer) serve
the same cluster; each reloads the minted API keys every ``KEY_RELOAD_S`` so that a key minted or
revoked through one is honoured by all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest

from arrwdb.cluster import metrics_text, placement
from arrwdb.cluster.actor import CATALOG_ENGINE
from arrwdb.cluster.frontend import ClusterEngine
from arrwdb.cluster.links import EngineLink
from arrwdb.config import Settings
from arrwdb.engine.auth_policy import decide_auth
from arrwdb.errors import ArrwdbError, InvalidInput
from arrwdb.ipc import wire
from arrwdb.runtime.ratelimit import RateLimiter
from arrwdb.server.app import build_app, uvicorn_options
from arrwdb.server.http_telemetry import HttpTelemetry, merge_metrics
from arrwdb.store.api_keys import ApiKeyRecord

log = logging.getLogger("arrwdb.server")

KEY_RELOAD_S = 2.0
ENGINE_START_S = 600.0  # how long start-up waits for the engines (a first start loads models)
ENGINE_CALL_S = 60.0


def create_cluster_app(
    settings: Settings, engines: list[str], *, auth_enabled: bool, metrics_dir: str | None = None
) -> FastAPI:
    """The HTTP app over the engine actors ``engines`` (placed and ready: ``start_cluster``);
    ``auth_enabled`` as ``start_cluster`` decided it; ``metrics_dir``: with several HTTP workers, their
    shared Prometheus folder (``server/http_telemetry.py``)."""
    links = {name: EngineLink(name, placement.handle(name)) for name in engines}
    cluster = ClusterEngine(links, settings.max_batch_size, settings.failover_after_s)
    telemetry = HttpTelemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.keyring.replace_minted(await cluster.api_keys(None))
        app.state.keyring.enabled = auth_enabled
        reloader = asyncio.create_task(_reload_keys(app, cluster))
        try:
            yield
        finally:
            reloader.cancel()
            await cluster.close()

    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    app = build_app(settings, cluster, telemetry, lambda: None, lifespan, limiter)
    if metrics_dir is None:
        app.state.merge_metrics = lambda text: text + metrics_text.merge([("frontend", generate_latest(REGISTRY))])
    else:  # every worker's HTTP figures added up, the engines' own copies of them left out
        app.state.merge_metrics = lambda text: merge_metrics(text, metrics_dir)
    app.state.cluster = cluster
    return app


def _ask(name: str, method: str, *args: Any) -> Any:
    """A call of an engine actor from outside an event loop: its value, or its typed error raised."""
    import ray

    status, value = ray.get(getattr(placement.handle(name), method).remote(*args), timeout=ENGINE_CALL_S)
    if status == "err":
        raise wire.error_from(value)
    return value


def _until_ready(engines: list[str]) -> None:
    """Wait (bounded) until every engine has loaded and answers ready."""
    give_up = time.monotonic() + ENGINE_START_S
    for name in engines:
        while True:
            try:
                _ask(name, "call", "ready", {})
                break
            except ArrwdbError as exc:
                if time.monotonic() > give_up:
                    raise
                log.info("cluster: waiting for %s (%s)", name, exc.message)
                time.sleep(0.5)
    log.info("cluster: %d engines ready", len(engines))


def start_cluster(settings: Settings, *, loopback: bool) -> tuple[list[str], bool]:
    """Join the Ray cluster, place (or find) the engines, wait for them, and decide auth from the
    catalog engine's keys and libraries (as one host decides from its store): the engines, and
    whether auth is on.  Refuses a non-loopback address without keys."""
    placement.connect(settings.ray_address)
    engines = placement.start_engines(settings)
    _until_ready(engines)
    records = [ApiKeyRecord(**r) for r in _ask(CATALOG_ENGINE, "call", "api_keys", {"tenant": None})]
    entries = _ask(CATALOG_ENGINE, "catalog_call", "entries", {})
    decision = decide_auth(
        settings.api_key_list(), settings.admin_key.strip(), records, Counter(e["tenant"] for e in entries)
    )
    if not decision.enabled and not loopback:
        raise InvalidInput(
            f"refusing to listen on {settings.host} without API keys: set ARRWDB_API_KEYS or ARRWDB_ADMIN_KEY "
            "(auth may be off only on a loopback address)"
        )
    decision.log()
    return engines, decision.enabled


async def _reload_keys(app: FastAPI, cluster: ClusterEngine) -> None:
    while True:
        await asyncio.sleep(KEY_RELOAD_S)
        try:
            app.state.keyring.replace_minted(await cluster.api_keys(None))
        except ArrwdbError as exc:  # the catalog engine is restarting: keep the keys held
            log.debug("cluster: key reload skipped: %s", exc.message)


def serve_cluster(settings: Settings, engines: list[str], auth_enabled: bool) -> None:
    """Serve HTTP over the cluster's engines in this process until stopped (``start_cluster`` first;
    with HTTP worker processes, ``server/serve.py`` hands them to the supervisor instead)."""
    app = create_cluster_app(settings, engines, auth_enabled=auth_enabled)
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings, None))
