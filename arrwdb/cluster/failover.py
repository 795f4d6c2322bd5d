"""A frontend's watch over replicated shards (``arrwdb.cluster.shard_state``).

Every ``REFRESH_S`` it reads the catalog again, so that a replica that left a shard's in-sync set is no
longer read from (the primary waits longer than two such periods before acknowledging writes without
it: ``arrwdb.cluster.replicator.SETTLE_S``), and asks each replicated shard's primary whether it
answers.  When a primary has been gone for ``failover_after_s``, the in-sync replica that has applied
the most of its log is promoted in the catalog (a new epoch); writes go to it from then on, and the
former primary, when Ray brings it back, follows it as a replica (bootstrapped anew: it may hold
writes that were never acknowledged).  Two frontends promoting at once cannot both win: the catalog
takes a change only at the epoch its caller saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.replication import REFRESH_S
from arrwdb.cluster.shard_state import replicated, with_copies
from arrwdb.cluster.sharding import shard_name
from arrwdb.errors import ArrwdbError

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine

log = logging.getLogger("arrwdb.cluster")

Entry = dict[str, Any]


class Failover:
    def __init__(self, cluster: ClusterEngine, failover_after_s: float) -> None:
        self.cluster = cluster
        self.failover_after_s = failover_after_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self.check()
            except Exception as exc:  # never let the watch end: the next period tries again
                log.warning("cluster: failover check failed: %s", exc)

    async def check(self) -> None:
        cluster = self.cluster
        if not cluster.known_entries():
            return
        try:  # every map held, replicated or not: an operator may add a copy to any library
            cluster.learn_entries(await cluster.catalog_entries())
        except ArrwdbError:  # the catalog engine is down: keep the shard maps held
            pass
        known = [with_copies(entry) for entry in cluster.known_entries() if replicated(entry)]
        primaries = {engine for entry in known for engine in entry["placement"]}
        await asyncio.gather(*(self._probe(engine) for engine in primaries), return_exceptions=True)
        now = time.monotonic()
        for entry in known:
            for shard, primary in enumerate(entry["placement"]):
                link = cluster.link(primary)
                if not link.up and now - link.down_since >= self.failover_after_s:
                    await self.promote(entry, shard)

    async def _probe(self, engine: str) -> None:
        link = self.cluster.link(engine)
        if link.up:
            await link.ask("call", "ready", {})

    async def promote(self, entry: Entry, shard: int) -> Entry | None:
        """Make the in-sync replica with the highest position the primary of ``shard``; None when none
        is up (the shard waits for its primary)."""
        cluster = self.cluster
        dead = entry["placement"][shard]
        epoch = entry["epochs"][shard]
        candidates = [e for e in entry["in_sync"][shard] if e != dead and cluster.link(e).up]
        positions = await asyncio.gather(
            *(cluster.link(e).ask("replica_position", shard_name(entry, shard)) for e in candidates),
            return_exceptions=True,
        )
        ranked = [
            (position[1], engine)
            for engine, position in zip(candidates, positions, strict=True)
            if not isinstance(position, BaseException) and position is not None and position[0] == epoch
        ]
        if not ranked:
            return None
        _, chosen = max(ranked)
        try:
            updated: Entry = await cluster.catalog_change(entry["id"], shard, "promote", epoch, chosen, dead)
        except ArrwdbError as exc:  # another frontend promoted first, or the catalog is down
            log.warning("cluster: promotion for shard %d of %s not made: %s", shard, entry["name"], exc)
            return None
        log.warning(
            "cluster: %s promoted to primary of shard %d of %s (epoch %d) after %s was gone %.1f s",
            chosen,
            shard,
            entry["name"],
            updated["epochs"][shard],
            dead,
            time.monotonic() - cluster.link(dead).down_since,
        )
        return updated
