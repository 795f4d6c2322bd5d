"""``GET /v1/cluster`` under ``--ray``: every engine, whether it answers, where it runs, and the shards
it holds with the sequence of each."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.sharding import shard_name
from arrwdb.errors import DeadlineExceeded, OutcomeUnknown, ShardUnavailable

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine

Entry = dict[str, Any]
_ENGINE_FIELDS = ("node", "address", "device", "pid", "cores")


async def cluster_view(cluster: ClusterEngine) -> dict[str, Any]:
    """While the catalog engine is down the shards listed are those of the libraries this frontend
    has used (``catalog``: ``"unavailable"``)."""
    catalog = "ok"
    try:
        entries: list[Entry] = await cluster.catalog_link.ask("catalog_call", "entries", {})
    except (ShardUnavailable, OutcomeUnknown, DeadlineExceeded):
        catalog = "unavailable"
        entries = cluster.known_entries()
    held: dict[str, list[tuple[Entry, int]]] = {name: [] for name in cluster.links}
    for entry in entries:
        for shard, engine in enumerate(entry["placement"]):
            held.setdefault(engine, []).append((entry, shard))
    infos = await asyncio.gather(*(cluster.link(name).ask("info") for name in held), return_exceptions=True)
    engines = []
    for name, info in zip(held, infos, strict=True):
        alive = not isinstance(info, BaseException)
        sequences = info.get("sequences", {}) if alive else {}
        shards = [
            {
                "library": entry["name"],
                "tenant": entry["tenant"],
                "shard": shard,
                "role": "primary",
                "sequence": sequences.get(shard_name(entry, shard)),
                "in_sync": alive,
            }
            for entry, shard in held[name]
        ]
        body: dict[str, Any] = {"name": name, "up": alive, "shards": shards}
        body.update({k: info[k] if alive else None for k in _ENGINE_FIELDS})
        engines.append(body)
    return {"engines": engines, "catalog": catalog}
