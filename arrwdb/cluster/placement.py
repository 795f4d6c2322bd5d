"""Placing engines on a Ray cluster: one engine actor per GPU, or one per node without GPUs.

Engines are detached named actors (``arrwdb-engine-<n>``, namespace ``arrwdb``): every frontend
(``arrwdb serve --ray``, on any node) finds the same engines by name, and they outlive the frontend
that placed them.  Each is pinned to its node (a hard node-affinity rule), because its store is on that
node's disk; Ray restarts it there when it dies (``max_restarts=-1``).

An engine without a GPU keeps to as many cores as its node declares to Ray (``arrwdb.runtime.cores.take_share``):
on a machine of its own that is every core; nodes of a local cluster that share one host split it.

Which engine goes where, when the cluster starts anew: a probe task on every node lists the engine
folders under ``--data-dir`` there; an engine whose folder a node has goes back to that node, and a
node with room for more engines than it has folders gets new ones.  (Nodes that share one disk, as a
local test cluster does, see every folder: each folder goes to one of them.)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arrwdb.config import Settings

log = logging.getLogger("arrwdb.cluster")

NAMESPACE = "arrwdb"
PREFIX = "arrwdb-engine-"


@dataclass(frozen=True)
class Node:
    node_id: str
    address: str
    gpus: int
    folders: tuple[int, ...]  # engine folders found under the data dir on this node
    cpus: int = 0  # the CPUs the node declares to Ray

    @property
    def capacity(self) -> int:
        return max(1, self.gpus)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one ``ray start`` made on this host)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)


def existing_engines() -> list[str]:
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        (a["name"] for a in named if a["namespace"] == NAMESPACE and a["name"].startswith(PREFIX)), key=engine_number
    )


def engine_number(name: str) -> int:
    return int(name[len(PREFIX) :])


def _list_folders(data_dir: str) -> list[int]:
    engines = Path(data_dir) / "engines"
    if not engines.is_dir():
        return []
    return sorted(int(p.name) for p in engines.iterdir() if p.is_dir() and p.name.isdigit())


def alive_nodes(data_dir: Path) -> list[Node]:
    """Every alive node with its GPUs and the engine folders its disk holds, in a stable order."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_list_folders)
    nodes = sorted((n for n in ray.nodes() if n["Alive"]), key=lambda n: (n["NodeManagerAddress"], n["NodeID"]))
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            str(data_dir.absolute())
        )
        for n in nodes
    ]
    folders = ray.get(refs, timeout=60)
    return [
        Node(
            n["NodeID"],
            n["NodeManagerAddress"],
            int(n["Resources"].get("GPU", 0)),
            tuple(found),
            int(n["Resources"].get("CPU", 0)),
        )
        for n, found in zip(nodes, folders, strict=True)
    ]


def plan(nodes: list[Node]) -> dict[int, Node]:
    """Engine number → node: existing folders back to a node that has them, then new numbers for the
    room left (a node's GPUs, or one engine on a node without)."""
    chosen: dict[int, Node] = {}
    room = {node.node_id: node.capacity for node in nodes}
    for node in nodes:
        for number in node.folders:
            if number not in chosen and room[node.node_id] > 0:
                chosen[number] = node
                room[node.node_id] -= 1
    fresh = (n for n in range(10_000) if n not in chosen and not any(n in node.folders for node in nodes))
    for node in nodes:
        for _ in range(room[node.node_id]):
            chosen[next(fresh)] = node
    return dict(sorted(chosen.items()))


def start_engines(settings: Settings) -> list[str]:
    """The engines' names, after creating those that are not running (Ray keeps running ones)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from arrwdb.cluster.actor import EngineActor

    running = existing_engines()
    if running:
        log.info("cluster: %d engines running: %s", len(running), ", ".join(running))
        return running
    actor_class = ray.remote(EngineActor)
    data_dir = settings.data_dir.absolute()
    names = []
    for number, node in plan(alive_nodes(data_dir)).items():
        name = f"{PREFIX}{number}"
        options: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "get_if_exists": True,
            "max_restarts": -1,
            "max_concurrency": 1000,
            "num_cpus": 0,
            "num_gpus": 1 if node.gpus else 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            "runtime_env": {"env_vars": _engine_environment()},
        }
        # An engine without a GPU keeps to the CPUs its node declares (nodes that share a host, as a local
        # test cluster's do, then do not oversubscribe its cores); a GPU engine is not limited.
        cores = 0 if node.gpus else node.cpus
        actor_class.options(**options).remote(name, settings.model_copy(update={"data_dir": data_dir}), cores)
        log.info("cluster: %s on node %s (%s), %d GPU", name, node.address, node.node_id[:8], 1 if node.gpus else 0)
        names.append(name)
    return names


def _engine_environment() -> dict[str, str]:
    """What an engine process inherits from the frontend's environment: arrwdb's own settings."""
    return {key: value for key, value in os.environ.items() if key.startswith("ARRWDB_")}


def handle(name: str) -> Any:
    import ray

    return ray.get_actor(name, namespace=NAMESPACE)
