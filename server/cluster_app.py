"""``arrwdb serve --ray``: this process serves HTTP; the engines are Ray actors (``arrwdb.cluster``).

The frontend holds no state of its own: libraries, shard maps and API keys are in the catalog engine,
documents in the shard engines.  Several frontends (on several nodes, behind any load balancer) serve
the same cluster; each reloads the minted API keys every ``KEY_RELOAD_S`` so that a key minted or
revoked through one is honoured by all.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest

from arrwdb.api_key_store import ApiKeyRecord
from arrwdb.auth_policy import decide_auth
from arrwdb.cluster import metrics_text, placement
from arrwdb.cluster.frontend import ClusterEngine
from arrwdb.cluster.links import EngineLink
from arrwdb.config import Settings
from arrwdb.errors import ArrwdbError, InvalidInput
from arrwdb.ratelimit import RateLimiter
from arrwdb.server.app import build_app, uvicorn_options
from arrwdb.server.http_telemetry import HttpTelemetry

log = logging.getLogger("arrwdb.server")

KEY_RELOAD_S = 2.0
ENGINE_START_S = 600.0  # how long start-up waits for the catalog engine (a first start loads models)


def create_cluster_app(settings: Settings, engines: list[str], *, loopback: bool) -> FastAPI:
    """The HTTP app over the engine actors ``engines`` (already placed: ``placement.start_engines``);
    ``loopback``: whether it listens on a loopback address (auth may then be off)."""
    links = {name: EngineLink(name, placement.handle(name)) for name in engines}
    cluster = ClusterEngine(links, settings.max_batch_size)
    telemetry = HttpTelemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _until_ready(cluster)
        records = [ApiKeyRecord(**record) for record in await cluster.api_keys(None)]
        tenants = Counter(await cluster.catalog_tenants())
        decision = decide_auth(settings.api_key_list(), settings.admin_key.strip(), records, tenants)
        if not decision.enabled and not loopback:
            raise InvalidInput(
                f"refusing to listen on {settings.host} without API keys: set ARRWDB_API_KEYS or ARRWDB_ADMIN_KEY"
            )
        app.state.keyring.replace_minted([record.__dict__ for record in records])
        app.state.keyring.enabled = decision.enabled
        decision.log()
        reloader = asyncio.create_task(_reload_keys(app, cluster))
        try:
            yield
        finally:
            reloader.cancel()
            await cluster.close()

    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst) if settings.rate_limit_per_s else None
    app = build_app(settings, cluster, telemetry, lambda: None, lifespan, limiter)
    app.state.merge_metrics = lambda text: text + metrics_text.merge([("frontend", generate_latest(REGISTRY))])
    app.state.cluster = cluster
    return app


async def _until_ready(cluster: ClusterEngine) -> None:
    """Wait (bounded) until every engine has loaded and answers ready."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + ENGINE_START_S
    for name, link in cluster.links.items():
        while True:
            try:
                await link.ask("call", "ready", {})
                break
            except ArrwdbError as exc:
                if loop.time() > give_up:
                    raise
                log.info("cluster: waiting for %s (%s)", name, exc.message)
                await asyncio.sleep(0.5)
    log.info("cluster: %d engines ready", len(cluster.links))


async def _reload_keys(app: FastAPI, cluster: ClusterEngine) -> None:
    while True:
        await asyncio.sleep(KEY_RELOAD_S)
        try:
            app.state.keyring.replace_minted(await cluster.api_keys(None))
        except ArrwdbError as exc:  # the catalog engine is restarting: keep the keys held
            log.debug("cluster: key reload skipped: %s", exc.message)


def serve_cluster(settings: Settings, *, loopback: bool) -> None:
    """Join the Ray cluster, place (or find) the engines, and serve HTTP until stopped."""
    placement.connect(settings.ray_address)
    engines = placement.start_engines(settings)
    app = create_cluster_app(settings, engines, loopback=loopback)
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings, None))
