"""Moving a shard's copies between engines (``POST`` / ``DELETE /v1/libraries/{library}/shards/{shard}/
replicas``): the catalog's change, and the removed copy's library dropped from its engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arrwdb.cluster.shard_state import with_copies
from arrwdb.cluster.sharding import shard_name
from arrwdb.errors import ArrwdbError, NotFound

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine


async def change_replicas(
    cluster: ClusterEngine, tenant: str, key: str, shard: int, engine: str, add: bool
) -> dict[str, Any]:
    """Add a copy of ``shard`` on ``engine`` (listed out of sync; its primary bootstraps it, then it
    joins the in-sync set) or remove one (never the primary); the shard's layout after it."""
    entry = with_copies(await cluster.entry(tenant, key, fresh=True))
    if not 0 <= shard < entry["shards"]:
        raise NotFound(f"library {key!r} has no shard {shard} (it has {entry['shards']})")
    if engine not in cluster.links:
        raise NotFound(f"engine {engine!r} is not part of this cluster (GET /v1/cluster lists them)")
    op = "add_copy" if add else "remove_copy"
    entry = with_copies(await cluster.catalog_change(entry["id"], shard, op, entry["epochs"][shard], engine, None))
    if not add:
        try:
            args = {"tenant": tenant, "key": shard_name(entry, shard)}
            await cluster.link(engine).ask("call", "delete_library", args, write=True)
        except ArrwdbError:  # the engine is down: its copy is left on its disk, unused
            pass
    return {
        "library": entry["name"],
        "shard": shard,
        "epoch": entry["epochs"][shard],
        "primary": entry["placement"][shard],
        "copies": entry["copies"][shard],
        "in_sync": entry["in_sync"][shard],
    }
