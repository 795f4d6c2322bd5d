"""``GET /v1/cluster`` under ``--ray``: every engine, whether it answers, where it runs, and the shard
copies it holds: role, epoch, whether in sync, and sequence."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.shard_state import role_of, with_copies
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
    for entry in map(with_copies, entries):
        for shard, copies in enumerate(entry["copies"]):
            for engine in copies:
                held.setdefault(engine, []).append((entry, shard))
    infos = await asyncio.gather(*(cluster.link(name).ask("info") for name in held), return_exceptions=True)
    alive = {name: info for name, info in zip(held, infos, strict=True) if not isinstance(info, BaseException)}
    engines = []
    for name in held:
        info = alive.get(name)
        shards = [_copy(entry, shard, name, info, alive) for entry, shard in held[name]]
        body: dict[str, Any] = {"name": name, "up": info is not None, "shards": shards}
        body.update({k: info[k] if info is not None else None for k in _ENGINE_FIELDS})
        engines.append(body)
    return {"engines": engines, "catalog": catalog}


def _copy(entry: Entry, shard: int, engine: str, info: dict[str, Any] | None, alive: dict[str, Any]) -> dict[str, Any]:
    """One copy of a shard: its role and epoch (the catalog's), whether it is in sync, and its sequence:
    a primary's last logged write to the shard; a replica's position in its primary's log (``lag``:
    the primary's writes it has not applied yet)."""
    name = shard_name(entry, shard)
    role = role_of(entry, shard, engine)
    epoch = entry["epochs"][shard]
    body: dict[str, Any] = {
        "library": entry["name"],
        "tenant": entry["tenant"],
        "shard": shard,
        "role": role,
        "epoch": epoch,
        "in_sync": info is not None and engine in entry["in_sync"][shard],
        "sequence": None,
    }
    if info is None:
        return body
    if role == "primary":
        body["sequence"] = info["sequences"].get(name)
        return body
    position = info.get("positions", {}).get(name)
    applied = position[1] if position is not None and position[0] == epoch else None
    primary = alive.get(entry["placement"][shard])
    head = primary["sequences"].get(name) if primary is not None else None
    body["sequence"] = applied
    body["lag"] = None if applied is None or head is None else max(0, head - applied)
    return body
