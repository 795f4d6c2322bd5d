"""An engine as a Ray actor: one ``Engine`` (store, indexes, model, device worker) in the actor's
process, serving the cluster frontends (``arrwdb.cluster.frontend``) through a few async methods.

The actor keeps its data in its own folder (``<data-dir>/engines/<n>``) on the node Ray pinned it to,
so that when Ray restarts it after a crash it opens the same store and recovers (the store's
durability, as for one host).  The engine starts on the first call, not in ``__init__``: Ray runs
``__init__`` outside the actor's event loop, and the engine's tasks need that loop.

Every method answers ``("ok", value)`` or ``("err", fields)`` (``arrwdb.ipc.wire.error_fields``), so
that a typed arrwdb error reaches the frontend as the same type, and a Ray error always means the
actor itself failed.  Queries and documents travel in the engine protocol's form (``arrwdb.ipc.wire``).
The catalog engine (``arrwdb-engine-0``) also holds the catalog (``arrwdb.cluster.catalog``) and the
API keys.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arrwdb.errors import NotReady, WorkerFailure
from arrwdb.ipc import wire

if TYPE_CHECKING:
    from arrwdb.cluster.catalog import Catalog
    from arrwdb.cluster.replication import Replication
    from arrwdb.config import Settings
    from arrwdb.engine.api import LocalEngine
    from arrwdb.records import ChangePage

Answer = tuple[str, Any]
CATALOG_ENGINE = "arrwdb-engine-0"
_WRITES = frozenset({"patch_document", "delete_document"})  # ``call`` operations that write a shard
_READS = frozenset({"get_document", "list_documents", "statistics"})


def engine_folder(data_dir: Path, name: str) -> Path:
    """Where engine ``arrwdb-engine-<n>`` keeps its store: ``<data-dir>/engines/<n>``."""
    return data_dir / "engines" / name.rsplit("-", 1)[-1]


class EngineActor:
    def __init__(self, name: str, settings: Settings, cores: int = 0) -> None:
        """``cores``: the CPUs its node declares to Ray, for an engine without a GPU (0: no limit)."""
        from arrwdb.runtime.cores import take_share

        self.name = name
        # Before torch loads: its thread pools and the engine's thread counts follow this process's cores.
        self.cores = take_share(cores, int(name.rsplit("-", 1)[-1]))
        self.settings = settings.model_copy(update={"data_dir": engine_folder(settings.data_dir, name)})
        self.api: LocalEngine | None = None
        self.catalog: Catalog | None = None
        self.replication: Replication | None = None
        self._starting = asyncio.Lock()
        self.started_at = time.time()

    async def _engine(self) -> LocalEngine:
        if self.api is not None:
            return self.api
        async with self._starting:
            if self.api is None:
                from arrwdb.cluster.catalog import Catalog
                from arrwdb.cluster.replication import Replication
                from arrwdb.engine.api import LocalEngine
                from arrwdb.engine.core import Engine
                from arrwdb.runtime import thread_priority

                thread_priority.configure(self.settings.worker_priority)
                engine = Engine(self.settings)
                await engine.start()
                if self.name == CATALOG_ENGINE:
                    self.catalog = Catalog(self.settings.data_dir / "catalog.sqlite3")
                api = LocalEngine(engine)
                self.replication = Replication(self.name, api, self._catalog)
                self.replication.start()
                self.api = api
        return self.api

    async def _catalog(self, op: str, args: dict[str, Any]) -> Any:
        """The catalog's ``op``: here on the catalog engine, else through it."""
        if self.catalog is not None:
            return await asyncio.to_thread(getattr(self.catalog, op), **args)
        return await self._replication().ask(CATALOG_ENGINE, "catalog_call", op, args, timeout=5.0)

    def _replication(self) -> Replication:
        if self.replication is None:  # set with the engine, before any call is served
            raise NotReady(f"engine {self.name} is starting")
        return self.replication

    async def _write(
        self, tenant: str, key: str, epoch: int | None, deadline: float, work: Callable[[LocalEngine], Awaitable[Any]]
    ) -> Answer:
        """A write to shard library ``key``: only as the primary of ``epoch``, acknowledged once its
        in-sync replicas have it too."""

        async def run(api: LocalEngine) -> Any:
            replication = self._replication()
            # The replicator of the epoch the write was accepted in: if that epoch ends meanwhile, the
            # write is not acknowledged (replicated() raises), whatever replaced it.
            replicator = await replication.for_write(tenant, key, epoch)
            value = await work(api)
            if replicator is not None:
                await replicator.replicated(api.engine.store.last_seq(), deadline)
            return value

        return await self._answer(run)

    async def _read(
        self, tenant: str, key: str, epoch: int | None, work: Callable[[LocalEngine], Awaitable[Any]]
    ) -> Answer:
        async def run(api: LocalEngine) -> Any:
            if epoch is not None:
                await self._replication().for_read(tenant, key, epoch)
            return await work(api)

        return await self._answer(run)

    async def _answer(self, work: Callable[[LocalEngine], Awaitable[Any]]) -> Answer:
        try:
            return "ok", await work(await self._engine())
        except Exception as exc:  # every failure travels typed (wire.error_fields)
            return "err", wire.error_fields(exc)

    async def call(self, op: str, args: dict[str, Any]) -> Answer:
        """A call of ``LocalEngine`` whose arguments and answer are plain values; ``seconds`` in
        ``args`` is its deadline as the time left (monotonic clocks differ between nodes)."""
        args = dict(args)
        if "seconds" in args:
            args["deadline"] = time.monotonic() + args.pop("seconds")
        epoch = args.pop("epoch", None)
        if op in _WRITES:
            deadline = time.monotonic() + self.settings.request_timeout_ms / 1000
            return await self._write(args["tenant"], args["key"], epoch, deadline, lambda api: getattr(api, op)(**args))
        if op in _READS:
            return await self._read(args["tenant"], args["key"], epoch, lambda api: getattr(api, op)(**args))
        return await self._answer(lambda api: getattr(api, op)(**args))

    async def search(
        self,
        tenant: str,
        key: str,
        described: list[dict[str, Any]],
        frames: list[bytes],
        seconds: float,
        epoch: int | None = None,
    ) -> Answer:
        """Hits of each query as the API's JSON bytes, and the batch's timings."""

        async def run(api: LocalEngine) -> tuple[list[bytes], list[Any]]:
            queries = wire.queries_in(described, frames)
            results, timings = await api.search(tenant, key, queries, time.monotonic() + seconds)
            return [hits.data for hits in results], wire.timings_fields(timings)

        return await self._read(tenant, key, epoch, run)

    async def upsert(
        self,
        tenant: str,
        key: str,
        described: list[dict[str, Any]],
        frames: list[bytes],
        bulk: bool,
        seconds: float,
        epoch: int | None = None,
    ) -> Answer:
        deadline = time.monotonic() + seconds

        async def run(api: LocalEngine) -> list[str]:
            docs = wire.documents_in(described, frames)
            return await api.upsert_documents(tenant, key, docs, bulk, deadline)

        return await self._write(tenant, key, epoch, deadline, run)

    async def delete_documents(
        self,
        tenant: str,
        key: str,
        ids: list[str] | None,
        filter_json: str | None,
        seconds: float,
        epoch: int | None = None,
    ) -> Answer:
        deadline = time.monotonic() + seconds
        return await self._write(
            tenant, key, epoch, deadline, lambda api: api.delete_documents(tenant, key, ids, filter_json, deadline)
        )

    # -- replication ---------------------------------------------------------------------------------

    async def create_copy(self, args: dict[str, Any], epoch: int) -> Answer:
        """A new library's copy on a replica: made empty, at position (``epoch``, 0) of its primary."""

        async def run(api: LocalEngine) -> dict[str, Any]:
            body = await api.create_library(**args)
            self._replication().positions.set(args["name"], epoch, 0)
            return body

        return await self._answer(run)

    async def learn_shard(self, entry: dict[str, Any], shard: int) -> Answer:
        """The catalog's entry of a shard this engine holds, from its primary (after a role change)."""
        from arrwdb.cluster.shard_state import shard_copies

        async def run(_api: LocalEngine) -> None:
            self._replication().learn(shard_copies(entry, shard))

        return await self._answer(run)

    async def replica_position(self, key: str) -> Answer:
        """(epoch, sequence) of the primary's log this copy of ``key`` has applied; None: unknown."""

        async def run(_api: LocalEngine) -> tuple[int, int] | None:
            return self._replication().positions.get(key)

        return await self._answer(run)

    async def apply_replicated(
        self, tenant: str, key: str, epoch: int, page: ChangePage, settings: dict[str, Any] | None
    ) -> Answer:
        return await self._answer(lambda _api: self._replication().apply(tenant, key, epoch, page, settings))

    async def embed(self, texts: list[str], model: str | None, seconds: float) -> Answer:
        async def run(api: LocalEngine) -> tuple[bytes, list[int], list[Any]]:
            vectors, timings = await api.embed(texts, time.monotonic() + seconds, model)
            return vectors.tobytes(), list(vectors.shape), wire.timings_fields(timings)

        return await self._answer(run)

    async def describe(self, tenant: str, keys: list[str]) -> Answer:
        """The library answers of the shard libraries ``keys`` that exist here (by key)."""

        async def run(api: LocalEngine) -> dict[str, dict[str, Any]]:
            found = {}
            for key in keys:
                try:
                    found[key] = await api.get_library(tenant, key)
                except Exception:  # a shard not (yet) on this engine is left out
                    continue
            return found

        return await self._answer(run)

    async def info(self) -> Answer:
        """This engine for ``GET /v1/cluster``: node, device, process, and the sequence of each shard
        library it holds (by name; the last write its store logged for it)."""

        async def run(api: LocalEngine) -> dict[str, Any]:
            engine = api.engine
            names = {state.record.id: state.record.name for state in engine.libraries.values()}
            by_id = await asyncio.to_thread(engine.store.library_sequences, list(names))
            sequences = {names[library_id]: seq for library_id, seq in by_id.items()}
            positions = self._replication().positions
            return {
                "positions": {name: positions.get(name) for name in names.values()},
                "name": self.name,
                "node": socket.gethostname(),
                "address": _node_address(),
                "device": str(engine.device),
                "pid": os.getpid(),
                "cores": self.cores or sorted(os.sched_getaffinity(0)),
                "started_at": self.started_at,
                "sequences": sequences,
            }

        return await self._answer(run)

    async def catalog_call(self, op: str, args: dict[str, Any]) -> Answer:
        async def run(_api: LocalEngine) -> Any:
            if self.catalog is None:
                raise WorkerFailure(f"the catalog lives on {CATALOG_ENGINE}, not on {self.name}")
            return await asyncio.to_thread(getattr(self.catalog, op), **args)

        return await self._answer(run)

    async def metrics(self) -> Answer:
        return await self._answer(lambda api: api.metrics())


def _node_address() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # outside Ray (unit tests)
        return ""
