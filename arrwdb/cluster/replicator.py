"""The primary's side of one replicated shard: a pump per replica, and writes that wait for them.

Each pump ships the shard's log in sequence order (``Store.changes_since``, pages of current document
states) to its replica, one page in flight at a time, so writes that commit while a page travels leave
together in the next (group replication, as group commit does for fsyncs).  A write is acknowledged
once every replica that must have it has applied it durably: the in-sync replicas, and a replica
that is joining them.

- A replica that fails (its actor ended, or a page timed out) leaves the in-sync set: the catalog
  records it first, then the primary waits ``SETTLE_S`` (frontends re-read the catalog every
  ``arrwdb.cluster.frontend.REFRESH_S``, so none still reads from it as in sync) before acknowledging
  writes without it.  Until the catalog has it, writes wait: none is acknowledged with fewer copies
  than the catalog says hold it.
- A replica out of sync catches up from its position (or bootstraps: its copy made anew from every
  document, when its position is of another epoch or gone), then joins: from the moment it starts
  joining every write also waits for it, and once it holds everything acknowledged before, the catalog
  lists it in sync.
- A replica in sync whose position turns out unusable leaves the set before it is bootstrapped: no
  copy counted in sync is ever emptied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from arrwdb.errors import Conflict, OutcomeUnknown, ShardUnavailable, StaleShardMap

if TYPE_CHECKING:
    from arrwdb.cluster.replication import Replication
    from arrwdb.cluster.shard_state import ShardCopies

log = logging.getLogger("arrwdb.cluster")

SETTLE_S = 2.5  # > 2 x the frontends' catalog refresh period
PAGE_TIMEOUT_S = 10.0  # a replica that takes longer to apply a page leaves the in-sync set
RETRY_S = 0.5  # between attempts to reach a failed replica


class ShardReplicator:
    def __init__(self, hub: Replication, shard: ShardCopies, store_library_id: str, dimension: int) -> None:
        self.hub = hub
        self.shard = shard
        self.store_library_id = store_library_id
        self.dimension = dimension
        self.in_sync = set(shard.in_sync) - {shard.primary}  # replicas that writes wait for
        self.joining: set[str] = set()
        self.acked: dict[str, int] = {}
        self.stopped = False
        # After a promotion, no write is acknowledged until every frontend and copy has had time to
        # read the new epoch (none then reads a copy this primary acknowledges writes without).
        self._accept_after = time.monotonic() + SETTLE_S if shard.epoch > 1 else 0.0
        self._changed = asyncio.Event()
        self._wake: dict[str, asyncio.Event] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self.update(shard)

    # -- what the catalog says -----------------------------------------------------------------------

    def update(self, shard: ShardCopies) -> None:
        """Follow the catalog's copies (an operator added or removed one); the epoch is this one's."""
        self.shard = shard
        wanted = set(shard.copies) - {shard.primary}
        for gone in set(self._pumps) - wanted:
            self._pumps.pop(gone).cancel()
            self.in_sync.discard(gone)
            self.joining.discard(gone)
            self.acked.pop(gone, None)
        for replica in wanted - set(self._pumps):
            self._wake[replica] = asyncio.Event()
            self._pumps[replica] = asyncio.get_running_loop().create_task(self._pump(replica))
        self._notify()

    def stop(self) -> None:
        self.stopped = True
        for task in self._pumps.values():
            task.cancel()
        self._notify()

    # -- writes ----------------------------------------------------------------------------------------

    async def replicated(self, target: int, deadline: float) -> None:
        """Return once every replica that must have sequence ``target`` has it; OutcomeUnknown when the
        deadline passes first or this engine stops being the primary (the write is on the primary)."""
        for wake in self._wake.values():
            wake.set()
        if time.monotonic() < self._accept_after:
            await asyncio.sleep(self._accept_after - time.monotonic())
        while True:
            changed = self._changed
            if self.stopped:
                raise OutcomeUnknown(
                    f"shard {self.shard.shard} has a new primary; this write reached the former one: read back first"
                )
            missing = [r for r in self.in_sync | self.joining if self.acked.get(r, -1) < target]
            if not missing:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutcomeUnknown(
                    f"written on the primary, not yet confirmed by replica {', '.join(sorted(missing))} in time: "
                    "read back first"
                )
            try:
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                continue

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- one pump per replica -------------------------------------------------------------------------

    async def _pump(self, replica: str) -> None:
        while not self.stopped:
            try:
                await self._follow(replica)
            except asyncio.CancelledError:
                raise
            except StaleShardMap:  # the replica follows a newer primary: this one was replaced
                self.hub.deposed(self)
                return
            except Exception as exc:
                log.warning("cluster: replica %s of %s failed: %s", replica, self.shard.key, exc)
                self.acked.pop(replica, None)
                self.joining.discard(replica)
                self._notify()
                await self._leave_or_retry(replica)
                await asyncio.sleep(RETRY_S)

    async def _leave_or_retry(self, replica: str) -> None:
        """``_leave`` from the pump's failure path: a catalog that cannot record it now (the catalog
        engine may be the one that failed) leaves the replica in the set, and the pump's next failure
        tries again; the pump itself must outlive the catalog's outage, or writes would wait for the
        replica for ever."""
        try:
            await self._leave(replica)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("cluster: %s could not leave the in-sync set of %s yet: %s", replica, self.shard.key, exc)

    async def _follow(self, replica: str) -> None:
        shard = self.shard
        position = await self.hub.ask(replica, "replica_position", shard.key, timeout=PAGE_TIMEOUT_S)
        bootstrap = position is None or position[0] != shard.epoch
        if bootstrap:
            await self._leave(replica)
        after = 0 if bootstrap else int(position[1])
        while not self.stopped:
            wake = self._wake[replica]
            wake.clear()
            page = await asyncio.to_thread(self.hub.store.changes_since, self.store_library_id, after, self.dimension)
            if bootstrap or page.documents or page.deleted or page.upto > after:
                settings = {**shard.settings} if bootstrap else None
                after = await self.hub.ask(
                    replica,
                    "apply_replicated",
                    shard.tenant,
                    shard.key,
                    shard.epoch,
                    page,
                    settings,
                    timeout=PAGE_TIMEOUT_S,
                )
                bootstrap = False
                self.acked[replica] = after
                self._notify()
            if page.complete and replica not in self.in_sync:
                await self._join(replica)
            if page.complete:
                try:
                    await asyncio.wait_for(wake.wait(), 1.0)
                except TimeoutError:
                    pass

    async def _join(self, replica: str) -> None:
        """Writes from now on wait for ``replica`` too; once it holds what was acknowledged before, the
        catalog lists it in sync."""
        if replica not in self.joining:
            self.joining.add(replica)
            self._join_target = self.hub.store.last_seq()
            self._notify()
            return
        if self.acked.get(replica, -1) >= self._join_target:
            entry = await self._catalog("add_in_sync", replica)
            self.in_sync.add(replica)
            self.joining.discard(replica)
            # Told at once, not at its next look at the catalog: if this primary is lost now, the
            # replica answers reads for it (arrwdb.cluster.frontend.ClusterEngine.read).
            try:
                await self.hub.ask(replica, "learn_shard", entry, self.shard.shard, timeout=PAGE_TIMEOUT_S)
            except ShardUnavailable:  # it reads the catalog within a second anyway
                pass
            log.warning("cluster: %s is in sync for %s (epoch %d)", replica, self.shard.key, self.shard.epoch)
            self._notify()

    async def _leave(self, replica: str) -> None:
        """Take ``replica`` out of the in-sync set (recorded in the catalog first), then stop waiting for it."""
        if replica not in self.in_sync:
            return
        await self._catalog("drop_in_sync", replica)
        await asyncio.sleep(SETTLE_S)
        self.in_sync.discard(replica)
        log.warning("cluster: %s left the in-sync set of %s", replica, self.shard.key)
        self._notify()

    async def _catalog(self, op: str, replica: str) -> dict[str, Any]:
        """A change of ``replica``'s state in the catalog; on a Conflict the catalog's view is learned:
        this engine deposed (a newer epoch), or the replica no longer a copy (an operator removed it)."""
        shard = self.shard
        try:
            return await self.hub.catalog_change(shard.library_id, shard.shard, op, shard.epoch, replica, shard.primary)
        except Conflict:
            await self.hub.relearn(shard)
            raise
