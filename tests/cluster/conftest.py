"""A local Ray cluster (2 nodes on 127.0.0.1) and ``arrwdb serve --ray`` on it, shared by a module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'arrwdb[ray]')")

from arrwdb.bench.ray_cluster import LocalRayCluster
from arrwdb.bench.serverproc import ServerProcess

# The long form (make cluster) sets more rounds of engine kills.
KILL_ROUNDS = int(os.environ.get("ARRWDB_CLUSTER_KILL_ROUNDS", "2"))


def start_server(
    cluster: LocalRayCluster, data_dir: Path, log: Path, workers: int = 0, env: dict[str, str] | None = None
) -> ServerProcess:
    env = {
        "ARRWDB_RAY_ADDRESS": cluster.address,
        "ARRWDB_DEVICE": "cpu",
        "ARRWDB_LOG_LEVEL": "info",
        "ARRWDB_WORKERS": str(workers),
        **(env or {}),
    }
    return ServerProcess(data_dir, env=env, log_path=log).start(timeout=300)


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRayCluster, ServerProcess]]:
    root = tmp_path_factory.mktemp("ray")
    with LocalRayCluster(nodes=2) as cluster:
        # Two HTTP worker processes, each a frontend of the cluster (the restart test runs one process).
        server = start_server(cluster, root / "data", root / "server.log", workers=2)
        try:
            yield cluster, server
        finally:
            server.stop()


@pytest.fixture
def client(ray_server: tuple[LocalRayCluster, ServerProcess]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ray_server[1].url, timeout=60) as http:
        yield http
