"""ClusterEngine against fake engine links: searches fan out once per shard per micro-batch, a batch
write that some shards commit and others refuse says which ids were written, and with replicated
shards a lost primary's shard is read from its replica while its writes are refused, and a stale
shard map is read again from the catalog."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import orjson
import pytest

from arrwdb.cluster.frontend import ClusterEngine
from arrwdb.cluster.sharding import shard_of
from arrwdb.errors import PartialWrite, ShardUnavailable, StaleShardMap, StorageFailure
from arrwdb.ipc import wire
from arrwdb.library.inputs import DocumentInput, SearchInput

ENTRY = {
    "id": "f" * 32,
    "tenant": "t",
    "name": "docs",
    "shards": 2,
    "replicas": 1,
    "placement": ["arrwdb-engine-0", "arrwdb-engine-1"],
    "settings": {"dimension": 4, "index_type": "brute_force", "metric": "ip", "index_params": {}, "model": "m"},
    "created_at": "now",
}


class FakeLink:
    def __init__(self, name: str, shard: int, fail_writes: Exception | None = None) -> None:
        self.name, self.shard, self.fail_writes = name, shard, fail_writes
        self.up = True
        self.calls: list[tuple[str, int]] = []

    async def ask(self, method: str, *args: Any, write: bool = False, deadline: float | None = None) -> Any:
        await asyncio.sleep(0.01)  # an actor call's trip
        if method == "catalog_call":
            return ENTRY
        if method == "search":
            described = args[2]
            self.calls.append(("search", len(described)))
            queries = wire.queries_in(described, args[3])
            answers = [
                orjson.dumps(
                    [
                        {
                            "document_id": f"s{self.shard}-{i}",
                            "chunk_index": 0,
                            "score": float(q.embedding[0]) + self.shard / 10,  # type: ignore[index]
                            "title": None,
                            "text": None,
                            "metadata": {},
                        }
                        for i in range(q.k)
                    ]
                )
                for q in queries
            ]
            return answers, [1.0, 2.0, len(queries)]
        if method == "upsert":
            if self.fail_writes is not None:
                raise self.fail_writes
            return [d["id"] for d in args[2]]
        raise AssertionError(method)

    def close(self) -> None:
        pass


def _cluster(fail_second: Exception | None = None) -> tuple[ClusterEngine, list[FakeLink]]:
    links = [FakeLink("arrwdb-engine-0", 0), FakeLink("arrwdb-engine-1", 1, fail_second)]
    return ClusterEngine({link.name: link for link in links}, max_batch=64), links  # type: ignore[misc]


def _query(value: float, k: int = 2) -> SearchInput:
    return SearchInput(query=None, embedding=np.array([value, 0, 0, 0], np.float32), k=k, json=True)


def test_concurrent_searches_share_one_call_per_shard() -> None:
    async def run() -> None:
        cluster, links = _cluster()
        deadline = time.monotonic() + 10
        answers = await asyncio.gather(*(cluster.search("t", "docs", [_query(i)], deadline) for i in range(20)))
        for i, (hits, _) in enumerate(answers):
            found = orjson.loads(hits[0].data)
            assert [h["document_id"] for h in found] == ["s1-0", "s1-1"]  # shard 1 scores 0.1 higher
            assert found[0]["score"] == pytest.approx(i + 0.1)
        for link in links:
            assert sum(n for _, n in link.calls) == 20  # every query reached every shard once
            assert len(link.calls) < 20, link.calls  # in micro-batches, not a call per query

    asyncio.run(run())


def test_a_write_refused_by_one_shard_names_what_was_written() -> None:
    async def run() -> None:
        cluster, _ = _cluster(fail_second=StorageFailure("disk full"))
        docs = [DocumentInput(id=f"d{i}", title=None, text="x", embedding=None) for i in range(20)]
        with pytest.raises(PartialWrite) as caught:
            await cluster.upsert_documents("t", "docs", docs, False, time.monotonic() + 10)
        assert sorted(caught.value.written) == sorted(d.id for d in docs if shard_of(d.id, 2) == 0)  # type: ignore[arg-type]
        assert caught.value.status == 507  # the refusing shard's status (storage), a 5xx
        assert "disk full" in caught.value.message

    asyncio.run(run())


def test_a_write_refused_by_every_shard_is_that_error() -> None:
    async def run() -> None:
        links = [FakeLink(f"arrwdb-engine-{i}", i, ShardUnavailable("restarting")) for i in range(2)]
        cluster = ClusterEngine({link.name: link for link in links}, max_batch=64)  # type: ignore[misc]
        docs = [DocumentInput(id=f"d{i}", title=None, text="x", embedding=None) for i in range(6)]
        with pytest.raises(ShardUnavailable) as caught:
            await cluster.upsert_documents("t", "docs", docs, False, time.monotonic() + 10)
        assert caught.value.retry_after_s == 1

    asyncio.run(run())


REPLICATED = {
    **ENTRY,
    "replicas": 2,
    "copies": [["arrwdb-engine-0", "arrwdb-engine-1"], ["arrwdb-engine-1", "arrwdb-engine-0"]],
    "in_sync": [["arrwdb-engine-0", "arrwdb-engine-1"], ["arrwdb-engine-1", "arrwdb-engine-0"]],
    "epochs": [1, 1],
}


class CopyLink:
    """An engine holding copies of both shards: searches answer by the shard named in the key, and the
    engine refuses calls that name another epoch than ``epochs`` (as a real engine's roles do)."""

    def __init__(self, name: str, catalog: list[dict[str, Any]], dead: bool = False) -> None:
        self.name, self.catalog, self.dead = name, catalog, dead
        self.up = not dead
        self.epochs = [1, 1]
        self.searched: list[int] = []

    async def ask(self, method: str, *args: Any, write: bool = False, deadline: float | None = None) -> Any:
        await asyncio.sleep(0.005)
        if method == "catalog_call":
            return self.catalog[0]
        if self.dead:
            self.up = False
            raise ShardUnavailable(f"engine {self.name} is restarting")
        if method == "search":
            shard, epoch = int(args[1].rsplit(".s", 1)[1]), args[5]
            if epoch != self.epochs[shard]:
                raise StaleShardMap(f"shard {shard} is at epoch {self.epochs[shard]}")
            self.searched.append(shard)
            queries = wire.queries_in(args[2], args[3])
            hits = [{"document_id": f"s{shard}", "chunk_index": 0, "score": 1.0 - shard, "metadata": {}}]
            return [orjson.dumps(hits) for _ in queries], [1.0, 2.0, len(queries)]
        raise AssertionError(method)

    def close(self) -> None:
        pass


def test_a_lost_primarys_shard_is_read_in_full_from_its_in_sync_replica() -> None:
    async def run() -> None:
        catalog = [REPLICATED]
        links = [CopyLink("arrwdb-engine-0", catalog, dead=True), CopyLink("arrwdb-engine-1", catalog)]
        cluster = ClusterEngine({link.name: link for link in links}, max_batch=64)  # type: ignore[misc]
        for _ in range(3):
            hits, _ = await cluster.search("t", "docs", [_query(1.0)], time.monotonic() + 10)
            assert [h["document_id"] for h in orjson.loads(hits[0].data)] == ["s0", "s1"]  # both shards
        assert sorted(set(links[1].searched)) == [0, 1]  # engine 1 answered for engine 0's shard too
        await cluster.close()

    asyncio.run(run())


def test_a_stale_map_is_read_again_from_the_catalog_and_the_search_retried() -> None:
    async def run() -> None:
        catalog = [REPLICATED]
        links = [CopyLink("arrwdb-engine-0", catalog), CopyLink("arrwdb-engine-1", catalog)]
        cluster = ClusterEngine({link.name: link for link in links}, max_batch=64)  # type: ignore[misc]
        await cluster.search("t", "docs", [_query(1.0)], time.monotonic() + 10)
        # Shard 0 promoted elsewhere (epoch 2): the engines know it, this frontend's cached map does not.
        promoted = {**REPLICATED, "placement": ["arrwdb-engine-1", "arrwdb-engine-1"], "epochs": [2, 1]}
        promoted["in_sync"] = [["arrwdb-engine-1"], REPLICATED["in_sync"][1]]
        catalog[0] = promoted
        for link in links:
            link.epochs = [2, 1]
        hits, _ = await cluster.search("t", "docs", [_query(1.0)], time.monotonic() + 10)
        assert [h["document_id"] for h in orjson.loads(hits[0].data)] == ["s0", "s1"]
        assert (await cluster.entry("t", "docs"))["epochs"] == [2, 1]
        await cluster.close()

    asyncio.run(run())


def test_a_write_to_a_lost_primary_is_refused_at_once_with_nothing_done() -> None:
    async def run() -> None:
        catalog = [REPLICATED]
        links = [CopyLink("arrwdb-engine-0", catalog, dead=True), CopyLink("arrwdb-engine-1", catalog)]
        links[0].up = False
        cluster = ClusterEngine({link.name: link for link in links}, max_batch=64)  # type: ignore[misc]
        ids = ["a", "b", "c", "d", "e", "f"]
        only_shard_0 = [i for i in ids if shard_of(i, 2) == 0]
        docs = [DocumentInput(id=i, title=None, text="x", embedding=None) for i in only_shard_0]
        with pytest.raises(ShardUnavailable):
            await cluster.upsert_documents("t", "docs", docs, False, time.monotonic() + 10)
        await cluster.close()

    asyncio.run(run())
