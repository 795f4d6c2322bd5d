"""Which copy answers a read of a replicated shard (arrwdb.cluster.copy_reads), against fake links: a
primary that is down, or that Ray restarted and is still loading, hands the read to an in-sync replica."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arrwdb.cluster.copy_reads import read_from_copies
from arrwdb.errors import ArrwdbError, NotReady, ShardUnavailable


class FakeLink:
    def __init__(self, name: str, refusal: ArrwdbError | None = None) -> None:
        self.name, self.up, self.refusal = name, True, refusal


class FakeCluster:
    def __init__(self, links: dict[str, FakeLink], entry: dict[str, Any]) -> None:
        self.links, self._entry = links, entry

    def link(self, name: str) -> FakeLink:
        return self.links[name]

    async def entry(self, tenant: str, key: str, fresh: bool = False) -> dict[str, Any]:
        return self._entry


def _entry() -> dict[str, Any]:
    return {
        "id": "lib",
        "name": "lib",
        "tenant": "default",
        "shards": 1,
        "placement": ["arrwdb-engine-0"],
        "copies": [["arrwdb-engine-0", "arrwdb-engine-1"]],
        "in_sync": [["arrwdb-engine-0", "arrwdb-engine-1"]],
        "epochs": [1],
    }


async def _ask(link: FakeLink, epoch: int) -> str:
    if link.refusal is not None:
        raise link.refusal
    return f"{link.name} at epoch {epoch}"


@pytest.mark.parametrize(
    "refusal",
    [NotReady("the server is not ready: still loading"), ShardUnavailable("engine arrwdb-engine-0 is unavailable")],
)
def test_a_primary_that_cannot_answer_hands_the_read_to_an_in_sync_replica(refusal: ArrwdbError) -> None:
    links = {"arrwdb-engine-0": FakeLink("arrwdb-engine-0", refusal), "arrwdb-engine-1": FakeLink("arrwdb-engine-1")}
    entry = _entry()
    answer = asyncio.run(read_from_copies(FakeCluster(links, entry), entry, 0, _ask))  # type: ignore[arg-type]
    assert answer == "arrwdb-engine-1 at epoch 1"


def test_the_last_refusal_is_raised_when_no_copy_answers() -> None:
    loading = NotReady("the server is not ready: still loading")
    links = {
        "arrwdb-engine-0": FakeLink("arrwdb-engine-0", ShardUnavailable("down")),
        "arrwdb-engine-1": FakeLink("arrwdb-engine-1", loading),
    }
    entry = _entry()
    with pytest.raises(NotReady):
        asyncio.run(read_from_copies(FakeCluster(links, entry), entry, 0, _ask))  # type: ignore[arg-type]
