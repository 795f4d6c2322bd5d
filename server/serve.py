"""``arrwdb serve``: the HTTP worker processes and the engine process (``server/supervisor.py``), or
with ``ARRWDB_WORKERS=0`` one process serving HTTP beside its engine, or with ``--ray`` an HTTP
process whose engines are actors on a Ray cluster (``server/cluster_app.py``)."""

from __future__ import annotations

import ipaddress
import logging
import os

import uvicorn

from arrwdb.config import Settings
from arrwdb.errors import InvalidInput
from arrwdb.runtime.gc_tuning import tune_process
from arrwdb.server.app import create_app, uvicorn_options
from arrwdb.server.auth_startup import decide_from_store
from arrwdb.server.supervisor import run_server


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Up to this many cores, ``auto`` serves HTTP inside the engine's process: on 2 cores the HTTP worker
# and the engine share the cores the device thread needs, and one process answers more
# (docs/ARCHITECTURE.md, "How many HTTP workers"; docs/PERFORMANCE.md, "HTTP workers").
ONE_PROCESS_UP_TO_CORES = 2
MAX_AUTO_WORKERS = 8


def workers_for(settings: Settings) -> int:
    """How many HTTP worker processes ``serve`` starts: the setting, or for ``auto`` none on a machine
    of 2 cores or fewer, else one per core left once the engine process has one, at most 8."""
    if settings.workers != "auto":
        return int(settings.workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores <= ONE_PROCESS_UP_TO_CORES:
        return 0
    return min(MAX_AUTO_WORKERS, cores - 1)


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.ray_address:
        from arrwdb.server.cluster_app import serve_cluster, start_cluster

        engines, auth_enabled = start_cluster(settings, loopback=is_loopback(settings.host))
        workers = workers_for(settings)
        if workers > 0:  # each HTTP worker a frontend of the cluster
            run_server(settings, workers, auth_enabled=auth_enabled, cluster=True)
        else:
            serve_cluster(settings, engines, auth_enabled)
        return
    auth = decide_from_store(settings)  # minted keys in the store keep auth on
    if not auth.enabled and not is_loopback(settings.host):
        raise InvalidInput(
            f"refusing to listen on {settings.host} without API keys: set ARRWDB_API_KEYS or ARRWDB_ADMIN_KEY "
            "(auth may be off only on a loopback address)"
        )
    workers = workers_for(settings)
    if workers > 0:
        auth.log()
        run_server(settings, workers, auth_enabled=auth.enabled)
        return
    tune_process()
    app = create_app(settings, freeze_gc=True)
    uvicorn.run(app, host=settings.host, port=settings.port, **uvicorn_options(settings, app.state.admission_door))
