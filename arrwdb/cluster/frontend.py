"""``ClusterEngine``: the engine protocol (``arrwdb.engine.api.EngineAPI``) over engine actors on a Ray
cluster, for the HTTP process of ``arrwdb serve --ray``.

A library is ``shards`` shard libraries, each on one engine (``arrwdb.cluster.sharding``), named
``<library id>.s<shard>`` in its engine's store; the catalog (``arrwdb.cluster.catalog``, on the
catalog engine) maps the user's library to them.  Writes go to the shard of each document's id, one
call per shard (``arrwdb.cluster.sharded_writes``); a library's shard libraries are created, listed,
deleted and summed up by ``arrwdb.cluster.sharded_libraries``; searches are gathered into
micro-batches and fanned out once per shard per batch (``arrwdb.cluster.fanout``).  API keys live in
the catalog engine's store; embedding and reranking requests go to the engines in turn (every engine
loads the same models).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from arrwdb.cluster import metrics_text, sharded_libraries
from arrwdb.cluster.actor import CATALOG_ENGINE
from arrwdb.cluster.cluster_view import cluster_view
from arrwdb.cluster.copy_reads import read_from_copies
from arrwdb.cluster.failover import Failover
from arrwdb.cluster.fanout import SearchFanout
from arrwdb.cluster.links import EngineLink
from arrwdb.cluster.replica_moves import change_replicas
from arrwdb.cluster.shard_errors import names_shard, renamed
from arrwdb.cluster.shard_state import with_copies
from arrwdb.cluster.sharded_writes import write_batch
from arrwdb.cluster.sharding import merge_pages, shard_name, shard_of, split_by_shard
from arrwdb.errors import ArrwdbError, NotFound, ShardUnavailable, StaleShardMap
from arrwdb.ipc import wire
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import DocumentInput, SearchInput
from arrwdb.runtime.timings import Timings

Entry = dict[str, Any]  # a catalog entry (arrwdb.cluster.catalog.Catalog)


class ClusterEngine:
    def __init__(self, links: dict[str, EngineLink], max_batch: int, failover_after_s: float = 10.0) -> None:
        self.links = links
        self.catalog_link = links[CATALOG_ENGINE]
        self._entries: dict[tuple[str, str], Entry] = {}
        self._turn = 0
        self.fanout = SearchFanout(self, max_batch)
        self.failover = Failover(self, failover_after_s)

    # -- plumbing ------------------------------------------------------------------------------

    def link(self, name: str) -> EngineLink:
        link = self.links.get(name)
        if link is None:
            raise ShardUnavailable(f"engine {name} is not part of this cluster; start its node")
        return link

    def any_link(self) -> EngineLink:
        """An engine for work that any engine can do (embedding, reranking): the next one that is up."""
        names = list(self.links)
        for _ in range(len(names)):
            self._turn = (self._turn + 1) % len(names)
            link = self.links[names[self._turn]]
            if link.up:
                return link
        return self.catalog_link  # none is up: its error says so

    def shard_link(self, entry: Entry, shard: int) -> EngineLink:
        """The link to the shard's primary (writes)."""
        return self.link(entry["placement"][shard])

    async def read(self, entry: Entry, shard: int, ask: Any) -> Any:
        """``ask(link, epoch)`` on a copy that may answer reads of ``shard`` (``arrwdb.cluster.copy_reads``)."""
        return await read_from_copies(self, entry, shard, ask)

    async def read_call(self, entry: Entry, shard: int, op: str, args: dict[str, Any]) -> Any:
        """``call`` of ``op`` with ``args`` on a copy that may answer reads of ``shard``."""
        return await self.read(entry, shard, lambda link, epoch: link.ask("call", op, {**args, "epoch": epoch}))

    async def write_call(self, entry: Entry, shard: int, op: str, args: dict[str, Any]) -> Any:
        """``call`` of a write ``op`` on the shard's primary, naming the epoch this frontend knows."""
        full = {**args, "epoch": with_copies(entry)["epochs"][shard]}
        return await self.shard_link(entry, shard).ask("call", op, full, write=True)

    # -- the catalog's shard maps ------------------------------------------------------------------

    async def catalog_entries(self) -> list[Entry]:
        return await self._catalog("entries")  # type: ignore[no-any-return]

    async def catalog_change(
        self, library_id: str, shard: int, op: str, epoch: int, engine: str, by: str | None
    ) -> Entry:
        args = {"library_id": library_id, "shard": shard, "kind": op, "epoch": epoch, "engine": engine, "by": by}
        entry: Entry = await self._catalog("change_shard", **args)
        self.learn_entries([entry], complete=False)
        return entry

    def learn_entries(self, entries: list[Entry], complete: bool = True) -> None:
        """Replace the cached entries by these fresher ones (``complete``: the whole catalog, so a cached
        library absent from it was deleted)."""
        by_id = {entry["id"]: entry for entry in entries}
        for cache_key, cached in list(self._entries.items()):
            fresh = by_id.get(cached["id"])
            if fresh is not None:
                self._entries[cache_key] = fresh
            elif complete:
                del self._entries[cache_key]

    async def _catalog(self, op: str, **args: Any) -> Any:
        return await self.catalog_link.ask("catalog_call", op, args, write=op in {"reserve", "publish", "remove"})

    async def entry(self, tenant: str, key: str, fresh: bool = False) -> Entry:
        """The catalog entry of ``tenant``'s library ``key`` (cached: shard maps never change)."""
        self.failover.start()
        cached = None if fresh else self._entries.get((tenant, key))
        if cached is not None:
            return cached
        found: Entry = await self._catalog("get", tenant=tenant, key=key)
        self._entries[(tenant, key)] = found
        return found

    def forget(self, entry: Entry) -> None:
        for cache_key in [k for k, v in self._entries.items() if v["id"] == entry["id"]]:
            del self._entries[cache_key]

    async def on_shards(self, tenant: str, key: str, call: Any) -> Any:
        """``call(entry)`` with the cached entry; once more with a fresh one when a shard library is
        missing (the library was deleted, or deleted and made anew, through another frontend)."""
        entry = await self.entry(tenant, key)
        try:
            return await call(entry)
        except StaleShardMap:
            self.forget(entry)
        except NotFound as exc:
            if not names_shard(exc):
                raise renamed(exc, entry) from None
            self.forget(entry)
        except ArrwdbError as exc:
            raise renamed(exc, entry) from None
        entry = await self.entry(tenant, key, fresh=True)
        try:
            return await call(entry)
        except NotFound as exc:
            if names_shard(exc):
                raise NotFound(f"library {key!r} not found") from None
            raise renamed(exc, entry) from None
        except ArrwdbError as exc:
            raise renamed(exc, entry) from None

    async def _gather(self, calls: list[Any]) -> list[Any]:
        """Every call's result; the first error raised once all have ended."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    # -- readiness, cluster ----------------------------------------------------------------------

    async def ready(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.catalog_link.ask("call", "ready", {})
        up = sum(link.up for link in self.links.values())
        return {**answer, "engines": len(self.links), "engines_up": up}

    async def cluster(self) -> dict[str, Any]:
        return await cluster_view(self)

    def known_entries(self) -> list[Entry]:
        """The libraries this frontend has used (cached catalog entries), one each."""
        return list({entry["id"]: entry for entry in self._entries.values()}.values())

    # -- libraries -------------------------------------------------------------------------------

    async def create_library(
        self,
        tenant: str,
        name: str,
        dimension: int | None,
        index_type: str,
        metric: str,
        params: dict[str, Any],
        model: str | None = None,
        shards: int = 1,
        replicas: int = 1,
    ) -> dict[str, Any]:
        return await sharded_libraries.create_library(
            self, tenant, name, dimension, index_type, metric, params, model, shards, replicas
        )

    async def list_libraries(self, tenant: str) -> list[dict[str, Any]]:
        return await sharded_libraries.list_libraries(self, tenant)

    async def get_library(self, tenant: str, key: str) -> dict[str, Any]:
        return await sharded_libraries.get_library(self, tenant, key)

    async def delete_library(self, tenant: str, key: str) -> None:
        await sharded_libraries.delete_library(self, tenant, key)

    async def statistics(self, tenant: str, key: str) -> dict[str, Any]:
        return await sharded_libraries.statistics(self, tenant, key)

    async def change_replicas(self, tenant: str, key: str, shard: int, engine: str, add: bool) -> dict[str, Any]:
        return await change_replicas(self, tenant, key, shard, engine, add)

    # -- documents -------------------------------------------------------------------------------

    async def upsert_documents(
        self, tenant: str, key: str, docs: list[DocumentInput], bulk: bool, deadline: float
    ) -> list[str]:
        return await write_batch(self, tenant, key, docs, bulk, deadline)

    async def _on_document(self, tenant: str, key: str, doc_id: str, op: str, args: dict[str, Any], write: bool) -> Any:
        async def run(entry: Entry) -> Any:
            shard = shard_of(doc_id, entry["shards"])
            full = {"tenant": tenant, "key": shard_name(entry, shard), "doc_id": doc_id, **args}
            if write:
                return await self.write_call(entry, shard, op, full)
            return await self.read_call(entry, shard, op, full)

        return await self.on_shards(tenant, key, run)

    async def delete_document(self, tenant: str, key: str, doc_id: str) -> None:
        await self._on_document(tenant, key, doc_id, "delete_document", {}, write=True)

    async def patch_document(self, tenant: str, key: str, doc_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._on_document(tenant, key, doc_id, "patch_document", {"patch": patch}, write=True)  # type: ignore[no-any-return]

    async def get_document(self, tenant: str, key: str, doc_id: str) -> dict[str, Any]:
        return await self._on_document(tenant, key, doc_id, "get_document", {}, write=False)  # type: ignore[no-any-return]

    async def delete_documents(
        self, tenant: str, key: str, ids: list[str] | None, filter_json: str | None, deadline: float
    ) -> int:
        seconds = max(0.0, deadline - time.monotonic())

        async def run(entry: Entry) -> int:
            if ids is not None:
                parts = {
                    s: [ids[p] for p in positions] for s, positions in split_by_shard(ids, entry["shards"]).items()
                }
            else:
                parts = {s: None for s in range(entry["shards"])}
            calls = [
                self.shard_link(entry, s).ask(
                    "delete_documents",
                    tenant,
                    shard_name(entry, s),
                    part,
                    filter_json,
                    seconds,
                    with_copies(entry)["epochs"][s],
                    write=True,
                    deadline=deadline,
                )
                for s, part in parts.items()
            ]
            return sum(await self._gather(calls))

        return await self.on_shards(tenant, key, run)  # type: ignore[no-any-return]

    async def list_documents(
        self, tenant: str, key: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        async def run(entry: Entry) -> tuple[list[dict[str, Any]], str | None]:
            calls = [
                self.read_call(
                    entry,
                    s,
                    "list_documents",
                    {"tenant": tenant, "key": shard_name(entry, s), "limit": limit, "after": after},
                )
                for s in range(entry["shards"])
            ]
            pages = await self._gather(calls)
            return merge_pages([(docs, cursor) for docs, cursor in pages], limit)

        return await self.on_shards(tenant, key, run)  # type: ignore[no-any-return]

    # -- search, embedding, models -----------------------------------------------------------------

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[HitsJSON], Timings]:
        return await self.on_shards(tenant, key, lambda entry: self.fanout.submit(entry, queries, deadline))  # type: ignore[no-any-return]

    async def embed(self, texts: list[str], deadline: float, model: str | None = None) -> tuple[np.ndarray, Timings]:
        seconds = max(0.0, deadline - time.monotonic())
        data, shape, timings = await self.any_link().ask("embed", texts, model, seconds, deadline=deadline)
        return np.frombuffer(data, dtype=np.float32).reshape(shape), wire.timings_from(timings)

    async def embeddings(
        self, inputs: list[str | list[int]], model: str | None, deadline: float, dimensions: int | None = None
    ) -> tuple[np.ndarray, int, str, Timings]:
        args = {"inputs": inputs, "model": model, "seconds": _seconds(deadline), "dimensions": dimensions}
        return await self.any_link().ask("call", "embeddings", args, deadline=deadline)  # type: ignore[no-any-return]

    async def models(self) -> list[dict[str, Any]]:
        return await self.any_link().ask("call", "models", {})  # type: ignore[no-any-return]

    async def rerank(
        self, query: str, documents: list[str], model: str | None, deadline: float
    ) -> tuple[np.ndarray, str, Timings]:
        args = {"query": query, "documents": documents, "model": model, "seconds": _seconds(deadline)}
        return await self.any_link().ask("call", "rerank", args, deadline=deadline)  # type: ignore[no-any-return]

    # -- keys, metrics ---------------------------------------------------------------------------

    async def create_api_key(self, record: dict[str, Any]) -> None:
        await self.catalog_link.ask("call", "create_api_key", {"record": record}, write=True)

    async def revoke_api_key(self, key_id: str) -> None:
        await self.catalog_link.ask("call", "revoke_api_key", {"key_id": key_id}, write=True)

    async def api_keys(self, tenant: str | None) -> list[dict[str, Any]]:
        return await self.catalog_link.ask("call", "api_keys", {"tenant": tenant})  # type: ignore[no-any-return]

    async def catalog_tenants(self) -> list[str]:
        entries: list[Entry] = await self._catalog("entries")
        return [entry["tenant"] for entry in entries]

    async def metrics(self) -> bytes:
        """Every engine's metrics, each sample labelled with its engine, and the cluster's gauges."""
        names = list(self.links)
        texts = await asyncio.gather(*(self.links[n].ask("metrics") for n in names), return_exceptions=True)
        own = (
            "# HELP arrwdb_cluster_engines Engine actors of the cluster.\n"
            "# TYPE arrwdb_cluster_engines gauge\n"
            f"arrwdb_cluster_engines {len(names)}\n"
            "# HELP arrwdb_cluster_engines_up Engine actors answering.\n"
            "# TYPE arrwdb_cluster_engines_up gauge\n"
            f"arrwdb_cluster_engines_up {sum(self.links[n].up for n in names)}\n"
        ).encode()
        sources = [(n, t) for n, t in zip(names, texts, strict=True) if not isinstance(t, BaseException)]
        return own + metrics_text.merge(sources)

    async def close(self) -> None:
        self.failover.close()
        await self.fanout.close()
        for link in self.links.values():
            link.close()


def _seconds(deadline: float) -> float:
    """A deadline as the time left: engines on other nodes have other monotonic clocks."""
    return max(0.0, deadline - time.monotonic())
