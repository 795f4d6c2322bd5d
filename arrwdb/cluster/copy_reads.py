"""Reads of a replicated shard: which copy answers (``arrwdb.cluster.shard_state``, docs/SCALING.md,
Replicas)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arrwdb.cluster.shard_state import readers, with_copies
from arrwdb.errors import ArrwdbError, NotReady, ShardUnavailable, StaleShardMap

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine

Entry = dict[str, Any]


async def read_from_copies(cluster: ClusterEngine, entry: Entry, shard: int, ask: Any) -> Any:
    """``ask(link, epoch)`` on a copy that may answer reads of ``shard``: the primary, or while it is
    down (or restarted and still loading its libraries) an in-sync replica.  When none answers, the
    catalog is read once more (a replica may have rejoined the in-sync set since this frontend's last
    look) before the last refusal is raised."""
    tried: set[str] = set()
    failure: ArrwdbError | None = None
    for attempt in range(2):
        names = [name for name in readers(entry, shard) if name not in tried]
        epoch = with_copies(entry)["epochs"][shard]
        for name in names:
            link = cluster.link(name)
            if not link.up and name != names[-1]:
                continue
            tried.add(name)
            try:
                return await ask(link, epoch)
            except StaleShardMap:
                raise
            except (ShardUnavailable, NotReady) as exc:  # down, or restarted by Ray and still loading
                failure = exc
        if attempt == 0:
            try:
                entry = await cluster.entry(entry["tenant"], entry["id"], fresh=True)
            except ArrwdbError:  # the catalog is down too: the other copies judge for themselves
                break
    # A copy outside this frontend's in-sync list answers only if its own view (read from the
    # catalog every second; arrwdb.cluster.replication) counts it in sync at this epoch.
    epoch = with_copies(entry)["epochs"][shard]
    for name in with_copies(entry)["copies"][shard]:
        if name in tried or not cluster.link(name).up:
            continue
        try:
            return await ask(cluster.link(name), epoch)
        except (ShardUnavailable, NotReady) as exc:  # StaleShardMap included: it is not in sync
            failure = exc
    if failure is None:
        raise ShardUnavailable(f"no copy of shard {shard} of {entry['name']!r} answers; try again shortly")
    raise failure
