"""An engine actor's replication: its role for each shard it holds, a replicator for each replicated
shard it is the primary of (``arrwdb.cluster.replicator``), and the positions of the copies it holds as
a replica (``arrwdb.cluster.replica_copy``).

Roles come from the catalog (``arrwdb.cluster.shard_state``), read again every ``REFRESH_S`` and at once
when a caller names a newer epoch than the one known.  Every shard call names the epoch its frontend
knows: an engine answers a write only as that epoch's primary, and a read only as its primary or an
in-sync replica; otherwise ``StaleShardMap`` (nothing done; the frontend reads the catalog again).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.replica_copy import Positions, apply_page
from arrwdb.cluster.replicator import ShardReplicator
from arrwdb.cluster.shard_state import ShardCopies, shard_copies, with_copies
from arrwdb.errors import ShardUnavailable, StaleShardMap
from arrwdb.ipc import wire
from arrwdb.records import ChangePage

if TYPE_CHECKING:
    from arrwdb.engine.api import LocalEngine

log = logging.getLogger("arrwdb.cluster")

REFRESH_S = 1.0


class Replication:
    def __init__(self, me: str, api: LocalEngine, catalog_call: Any) -> None:
        """``catalog_call(op, args)``: the catalog's ``op`` (on this engine or through the catalog engine)."""
        self.me = me
        self.api = api
        self.store = api.engine.store
        self.positions = Positions(api.engine.settings.data_dir / "replication.json")
        self._catalog_call = catalog_call
        self.roles: dict[str, ShardCopies] = {}
        self.replicators: dict[str, ShardReplicator] = {}
        self._handles: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # the catalog engine is down: keep the roles known
                log.debug("cluster: roles not refreshed: %s", exc)
            await asyncio.sleep(REFRESH_S)

    # -- roles -----------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        entries: list[dict[str, Any]] = await self._catalog_call("entries", {})
        seen: set[str] = set()
        for entry in entries:
            entry = with_copies(entry)
            for shard in range(entry["shards"]):
                if self.me in entry["copies"][shard]:
                    copies = shard_copies(entry, shard)
                    seen.add(copies.key)
                    self._learn(copies)
        for key in set(self.roles) - seen:  # a library deleted, or this copy removed
            self.roles.pop(key)
            self._stop(key)

    def learn(self, copies: ShardCopies) -> None:
        """A shard's copies as its primary read them from the catalog: kept unless older than known."""
        known = self.roles.get(copies.key)
        if known is None or copies.epoch >= known.epoch:
            self._learn(copies)

    def _learn(self, copies: ShardCopies) -> None:
        self.roles[copies.key] = copies
        running = self.replicators.get(copies.key)
        if copies.primary != self.me or len(copies.copies) < 2:
            self._stop(copies.key)
            return
        # A primary follows its own epoch: pages of a former primary (an older epoch) are refused.
        known = self.positions.get(copies.key)
        if known is None or known[0] < copies.epoch:
            self.positions.set(copies.key, copies.epoch, 0)
        if running is not None and running.shard.epoch == copies.epoch and not running.stopped:
            copies.settings = running.shard.settings
            running.update(copies)
            return
        self._stop(copies.key)
        try:
            record = self.api.engine.library(copies.tenant, copies.key).record
        except Exception:  # the copy is being made: the next refresh starts it
            return
        # A bootstrapped copy is made as the primary's own library was (its record, not the API's body).
        copies.settings = {
            "dimension": record.dimension,
            "index_type": record.index_type,
            "metric": record.metric,
            "index_params": record.index_params,
            "model": record.model or None,
        }
        self.replicators[copies.key] = ShardReplicator(self, copies, record.id, record.dimension)

    def _stop(self, key: str) -> None:
        replicator = self.replicators.pop(key, None)
        if replicator is not None:
            replicator.stop()

    def deposed(self, replicator: ShardReplicator) -> None:
        """``replicator``'s engine is no longer that shard's primary (a newer epoch exists)."""
        replicator.stop()
        if self.replicators.get(replicator.shard.key) is replicator:
            del self.replicators[replicator.shard.key]
        self.roles.pop(replicator.shard.key, None)

    async def relearn(self, copies: ShardCopies) -> None:
        """Read one shard's entry again (after the catalog refused a change); a replicator whose engine
        is no longer that epoch's primary is stopped."""
        entry = await self._catalog_call("get", {"tenant": copies.tenant, "key": copies.library_id})
        fresh = shard_copies(entry, copies.shard)
        running = self.replicators.get(copies.key)
        if running is not None and (fresh.epoch != running.shard.epoch or fresh.primary != self.me):
            self.deposed(running)
        self._learn(fresh)

    async def _copies(self, tenant: str, key: str, epoch: int | None) -> ShardCopies:
        known = self.roles.get(key)
        if known is None or (epoch is not None and epoch > known.epoch):
            library_id, _, shard = key.rpartition(".s")
            try:
                entry = await self._catalog_call("get", {"tenant": tenant, "key": library_id})
            except ShardUnavailable:
                if known is None:
                    raise
                return known
            self._learn(shard_copies(entry, int(shard)))
            known = self.roles.get(key)
            if known is None:
                raise StaleShardMap(f"{self.me} holds no copy of {key}")
        return known

    async def for_write(self, tenant: str, key: str, epoch: int | None) -> ShardReplicator | None:
        """The shard's replicator when it has replicas (None: one copy); StaleShardMap unless this engine
        is the primary of ``epoch``."""
        copies = await self._copies(tenant, key, epoch)
        if copies.primary != self.me or (epoch is not None and epoch != copies.epoch):
            raise StaleShardMap(f"{self.me} is not the primary of {key} at epoch {epoch}")
        replicator = self.replicators.get(key)
        if replicator is None and len(copies.copies) > 1:  # never a write acknowledged by the primary alone
            raise ShardUnavailable(f"{self.me} is not yet shipping {key} to its replicas; try again shortly")
        return replicator

    async def for_read(self, tenant: str, key: str, epoch: int | None) -> None:
        copies = await self._copies(tenant, key, epoch)
        if epoch is not None and epoch != copies.epoch:
            raise StaleShardMap(f"{key} is at epoch {copies.epoch}, not {epoch}")
        if self.me != copies.primary and self.me not in copies.in_sync:
            raise StaleShardMap(f"{self.me}'s copy of {key} is not in sync")

    # -- as a replica ----------------------------------------------------------------------------------

    async def apply(self, tenant: str, key: str, epoch: int, page: ChangePage, settings: dict[str, Any] | None) -> int:
        known = self.roles.get(key)
        if known is not None and known.primary == self.me and known.epoch >= epoch:
            raise StaleShardMap(f"{self.me} is the primary of {key} at epoch {known.epoch}")
        return await apply_page(self.api, self.positions, tenant, key, epoch, page, settings)

    # -- other engines, the catalog ----------------------------------------------------------------------

    async def ask(self, engine: str, method: str, *args: Any, timeout: float) -> Any:
        """``method`` of engine actor ``engine``: its value, or its typed error raised here."""
        handle = self._handles.get(engine)
        if handle is None:
            import ray

            # Engines are named actors of the namespace this actor runs in (arrwdb.cluster.placement).
            namespace = ray.get_runtime_context().namespace
            handle = self._handles[engine] = await asyncio.to_thread(ray.get_actor, engine, namespace)
        try:
            status, value = await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)
        except TimeoutError:
            raise ShardUnavailable(f"engine {engine} did not answer {method} in {timeout:.0f} s") from None
        except Exception as exc:  # Ray's errors: the actor ended or is restarting
            raise ShardUnavailable(f"engine {engine} is unavailable: {type(exc).__name__}") from None
        if status == "err":
            raise wire.error_from(value)
        return value

    async def catalog_change(
        self, library_id: str, shard: int, op: str, epoch: int, engine: str, by: str | None
    ) -> dict[str, Any]:
        args = {"library_id": library_id, "shard": shard, "kind": op, "epoch": epoch, "engine": engine, "by": by}
        entry: dict[str, Any] = await self._catalog_call("change_shard", args)
        self._learn(shard_copies(entry, shard))
        return entry
