"""An HTTP worker process: the HTTP server on its own listening socket (``SO_REUSEPORT``: the kernel
spreads new connections over the workers), its engine in the engine process.

Nothing here imports torch or FAISS: a worker parses, validates, authenticates, refuses at the door
and renders answers; the engine protocol carries the rest.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from arrwdb.config import Settings


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket on (host, port) that other sockets of this user may bind as well (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    if listen:
        sock.listen(2048)
        sock.setblocking(False)
    return sock


def run_worker(
    settings: Settings, port: int, endpoint: str, board_path: Path, metrics_dir: str, auth_enabled: bool, workers: int
) -> None:
    """The worker process's main: serve until SIGTERM (uvicorn answers the requests in flight first)."""
    # Before prometheus_client is imported: this process's figures go to the shared folder.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from arrwdb.ipc.lifetime import die_with_parent

    die_with_parent()
    import logging

    import uvicorn

    from arrwdb.server.app import create_worker_app, uvicorn_options

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_worker_app(settings, endpoint, board_path, metrics_dir, auth_enabled, workers)
    sock = listening_socket(settings.host, port)
    config = uvicorn.Config(app, **uvicorn_options(settings, app.state.admission_door))
    uvicorn.Server(config).run(sockets=[sock])


def run_cluster_worker(settings: Settings, port: int, metrics_dir: str, auth_enabled: bool) -> None:
    """An HTTP worker of ``arrwdb serve --ray --workers N``: a frontend of the engines on Ray (placed
    by the parent), on its own listening socket."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from arrwdb.ipc.lifetime import die_with_parent

    die_with_parent()
    import logging

    import uvicorn

    from arrwdb.cluster import placement
    from arrwdb.server.app import uvicorn_options
    from arrwdb.server.cluster_app import create_cluster_app

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    placement.connect(settings.ray_address)
    engines = placement.existing_engines()
    app = create_cluster_app(settings, engines, auth_enabled=auth_enabled, metrics_dir=metrics_dir)
    sock = listening_socket(settings.host, port)
    config = uvicorn.Config(app, **uvicorn_options(settings, None))
    uvicorn.Server(config).run(sockets=[sock])
