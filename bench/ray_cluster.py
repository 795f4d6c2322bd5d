"""A local Ray cluster of several nodes on 127.0.0.1, for the scale-out tests and benchmarks.

Every node is started with ``node_ip_address=127.0.0.1`` (``ray start`` would bind the host's external
interface, and a second node on one host rewrote 127.0.0.1 to it: shared/DESIGN.md, Traps, Ray), and
every node's address is checked before anything is sent.  ``listening_beyond_loopback`` lists any
socket of the cluster's processes that listens elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from types import TracebackType
from typing import Any

from arrwdb.bench.serverproc import process_tree

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}
NODE_OPTIONS: dict[str, Any] = {
    "num_cpus": 1,
    "node_ip_address": "127.0.0.1",
    "object_store_memory": 200 * 1024 * 1024,
}


class LocalRayCluster:
    def __init__(self, nodes: int = 2) -> None:
        self.nodes = nodes
        self.cluster: Any = None

    def start(self) -> LocalRayCluster:
        os.environ.update(RAY_ENV)
        from ray.cluster_utils import Cluster

        head = {**NODE_OPTIONS, "include_dashboard": False, "dashboard_host": "127.0.0.1"}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(self.nodes - 1):
            self.cluster.add_node(**NODE_OPTIONS)
        self.cluster.wait_for_nodes()
        for node in self.cluster.list_all_nodes():
            if node.node_ip_address != "127.0.0.1":
                raise RuntimeError(f"a Ray node is on {node.node_ip_address}, not 127.0.0.1")
        return self

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def pids(self) -> set[int]:
        """The processes of the cluster's nodes and everything they started (workers, actors)."""
        found: set[int] = set()
        for node in self.cluster.list_all_nodes():
            for infos in node.all_processes.values():
                for info in infos:
                    found |= set(process_tree(info.process.pid))
        return found

    def listening_beyond_loopback(self) -> list[str]:
        """``ss`` lines of listening TCP sockets of the cluster's processes not bound to loopback."""
        pids = self.pids()
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
        bad = []
        for line in out.splitlines():
            fields = line.split()
            local = fields[3]
            if local.startswith(("127.", "[::1]", "[::ffff:127.")):
                continue
            if any(f"pid={pid}," in line for pid in pids):
                bad.append(line)
        return bad

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
