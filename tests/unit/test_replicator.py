"""The primary's replicator (arrwdb.cluster.replicator) against a fake hub: a replica lost together with
the catalog engine leaves the in-sync set once the catalog is back, so writes resume without it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from arrwdb.cluster import replicator as replicator_module
from arrwdb.cluster.replicator import ShardReplicator
from arrwdb.cluster.shard_state import ShardCopies
from arrwdb.errors import OutcomeUnknown, ShardUnavailable
from arrwdb.records import ChangePage


class FakeStore:
    def __init__(self) -> None:
        self.seq = 0

    def last_seq(self) -> int:
        return self.seq

    def changes_since(self, library_id: str, after: int, dimension: int) -> ChangePage:
        return ChangePage(after=after, upto=self.seq, documents=(), deleted=(), complete=True)


class FakeHub:
    """Engines that answer or not (``down``), and a catalog that records in-sync changes or is down."""

    def __init__(self) -> None:
        self.store = FakeStore()
        self.down: set[str] = set()
        self.catalog_down = False
        self.catalog_changes: list[tuple[str, str]] = []
        self.positions: dict[str, int] = {}

    async def ask(self, engine: str, method: str, *args: Any, timeout: float) -> Any:
        if engine in self.down:
            raise ShardUnavailable(f"engine {engine} is unavailable: ActorUnavailableError")
        if method == "replica_position":
            return (1, self.positions.get(engine, 0))
        if method == "apply_replicated":
            page: ChangePage = args[3]
            self.positions[engine] = page.upto
            return page.upto
        return None

    async def catalog_change(
        self, library_id: str, shard: int, op: str, epoch: int, engine: str, by: str | None
    ) -> dict[str, Any]:
        if self.catalog_down:
            raise ShardUnavailable("engine arrwdb-engine-0 is unavailable: ActorUnavailableError")
        self.catalog_changes.append((op, engine))
        return {}


def _shard() -> ShardCopies:
    return ShardCopies(
        tenant="default",
        key="lib.s0",
        library_id="lib",
        shard=0,
        epoch=1,
        primary="arrwdb-engine-1",
        copies=["arrwdb-engine-1", "arrwdb-engine-0"],
        in_sync=["arrwdb-engine-1", "arrwdb-engine-0"],
    )


@pytest.fixture(autouse=True)
def _short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicator_module, "SETTLE_S", 0.05)
    monkeypatch.setattr(replicator_module, "RETRY_S", 0.02)


def test_a_write_waits_for_an_in_sync_replica_that_answers() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        replicator = ShardReplicator(hub, _shard(), "lib", 4)  # type: ignore[arg-type]
        hub.store.seq = 3
        await replicator.replicated(3, time.monotonic() + 5)
        assert hub.positions["arrwdb-engine-0"] == 3
        replicator.stop()

    asyncio.run(scenario())


def test_a_replica_lost_with_the_catalog_leaves_the_set_once_the_catalog_is_back() -> None:
    async def scenario() -> None:
        hub = FakeHub()
        replicator = ShardReplicator(hub, _shard(), "lib", 4)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        hub.down.add("arrwdb-engine-0")
        hub.catalog_down = True  # the replica's engine holds the catalog
        hub.store.seq = 5
        with pytest.raises(OutcomeUnknown, match="arrwdb-engine-0"):
            await replicator.replicated(5, time.monotonic() + 0.3)
        assert "arrwdb-engine-0" in replicator.in_sync  # the catalog has not recorded its leaving
        hub.catalog_down = False
        await replicator.replicated(5, time.monotonic() + 5)  # acknowledged without the lost replica
        assert ("drop_in_sync", "arrwdb-engine-0") in hub.catalog_changes
        assert "arrwdb-engine-0" not in replicator.in_sync
        replicator.stop()

    asyncio.run(scenario())
