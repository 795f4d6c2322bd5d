"""What the HTTP layer asks of an engine: every call async, every answer plain data.

``EngineAPI`` is the one surface an HTTP worker uses, whether the engine runs in its own process
(``arrwdb.ipc.remote.RemoteEngine``, over ZMQ) or in the same one (``LocalEngine``, tests and
benchmarks).  The engine process serves its protocol by calling a ``LocalEngine``, so the two cannot
answer differently.  Answers are plain values (dicts, lists, numpy arrays, rendered hits), never live
engine objects, so that they can cross a process boundary.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from arrwdb.errors import InvalidInput
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import DocumentInput, SearchInput
from arrwdb.runtime.timings import Timings

if TYPE_CHECKING:
    from arrwdb.engine.core import Engine
    from arrwdb.library.library import LibraryState
    from arrwdb.store.api_keys import ApiKeyRecord


class EngineAPI(Protocol):
    async def ready(self) -> dict[str, Any]: ...

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
    ) -> dict[str, Any]: ...

    async def list_libraries(self, tenant: str) -> list[dict[str, Any]]: ...

    async def get_library(self, tenant: str, key: str) -> dict[str, Any]: ...

    async def delete_library(self, tenant: str, key: str) -> None: ...

    async def statistics(self, tenant: str, key: str) -> dict[str, Any]: ...

    async def upsert_documents(
        self, tenant: str, key: str, docs: list[DocumentInput], bulk: bool, deadline: float
    ) -> list[str]: ...

    async def delete_document(self, tenant: str, key: str, doc_id: str) -> None: ...

    async def patch_document(self, tenant: str, key: str, doc_id: str, patch: dict[str, Any]) -> dict[str, Any]: ...

    async def delete_documents(
        self, tenant: str, key: str, ids: list[str] | None, filter_json: str | None, deadline: float
    ) -> int: ...

    async def get_document(self, tenant: str, key: str, doc_id: str) -> dict[str, Any]: ...

    async def list_documents(
        self, tenant: str, key: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[HitsJSON], Timings]: ...

    async def embed(
        self, texts: list[str], deadline: float, model: str | None = None
    ) -> tuple[np.ndarray, Timings]: ...

    async def embeddings(
        self, inputs: list[str | list[int]], model: str | None, deadline: float, dimensions: int | None = None
    ) -> tuple[np.ndarray, int, str, Timings]:
        """OpenAI-style: the vectors, the tokens the model read, and the model's name."""
        ...

    async def models(self) -> list[dict[str, Any]]: ...

    async def rerank(
        self, query: str, documents: list[str], model: str | None, deadline: float
    ) -> tuple[np.ndarray, str, Timings]:
        """Relevance scores of ``documents`` for ``query``, in input order, and the reranker's name."""
        ...

    async def create_api_key(self, record: dict[str, Any]) -> None: ...

    async def revoke_api_key(self, key_id: str) -> None: ...

    async def api_keys(self, tenant: str | None) -> list[dict[str, Any]]: ...

    async def metrics(self) -> bytes: ...

    async def cluster(self) -> dict[str, Any]:
        """``GET /v1/cluster``: the engines, where they run, and the shards each holds."""
        ...

    async def change_replicas(self, tenant: str, key: str, shard: int, engine: str, add: bool) -> dict[str, Any]:
        """Add (``add``) or remove the copy of a shard on ``engine``; the shard's layout after it."""
        ...


def library_body(state: LibraryState, default_model: str | None) -> dict[str, Any]:
    """A library as the API shows it (``default_model``: what a library without a model uses)."""
    r = state.record
    return {
        "id": r.id,
        "name": r.name,
        "dimension": r.dimension,
        "index_type": r.index_type,
        "metric": r.metric,
        "index_params": r.index_params,
        "document_count": state.document_count,
        "created_at": r.created_at,
        "model": r.model or default_model,
        "shards": 1,
        "replicas": 1,
    }


MAX_SHARDS = 64
MAX_REPLICAS = 8


def check_layout(shards: int, replicas: int, clustered: bool) -> None:
    """A library's shards and replicas, against what this server can hold (InvalidInput says why)."""
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInput(f"shards must be between 1 and {MAX_SHARDS}", param="shards")
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidInput(f"replicas must be between 1 and {MAX_REPLICAS}", param="replicas")
    if replicas > 1 and not clustered:
        raise InvalidInput(
            "replicas > 1 needs engines on a Ray cluster (arrwdb serve --ray); this server has one engine",
            param="replicas",
        )
    if shards > 1 and not clustered:
        raise InvalidInput(
            "shards > 1 needs engines on a Ray cluster (arrwdb serve --ray); this server has one engine",
            param="shards",
        )


def replicas_need_ray() -> InvalidInput:
    return InvalidInput(
        "a library has one copy of its one shard on this server: replicas need engines on a Ray cluster "
        "(arrwdb serve --ray)",
        param="replicas",
    )


def key_record_body(record: ApiKeyRecord) -> dict[str, Any]:
    return asdict(record)


class LocalEngine:
    """``EngineAPI`` over an ``Engine`` in this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def ready(self) -> dict[str, Any]:
        engine = self.engine
        engine.check_ready()
        return {"status": "ready", "device": str(engine.device), "libraries": len(engine.libraries)}

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
        check_layout(shards, replicas, clustered=False)
        state = await self.engine.create_library(tenant, name, dimension, index_type, metric, params, model)
        return self._body(state)

    def _body(self, state: LibraryState) -> dict[str, Any]:
        return library_body(state, self.engine.models.default)

    async def list_libraries(self, tenant: str) -> list[dict[str, Any]]:
        self.engine.check_ready()
        return [self._body(s) for s in self.engine.list_libraries(tenant)]

    async def get_library(self, tenant: str, key: str) -> dict[str, Any]:
        self.engine.check_ready()
        return self._body(self.engine.library(tenant, key))

    async def delete_library(self, tenant: str, key: str) -> None:
        await self.engine.delete_library(tenant, key)

    async def statistics(self, tenant: str, key: str) -> dict[str, Any]:
        engine = self.engine
        engine.check_ready()
        # On the device worker: the index is mutated there, and read from here it can be caught halfway
        # through an update (the crash harness saw an IndexError, a 500, under concurrent writes).
        stats: dict[str, Any] = await engine.on_worker(lambda: engine.statistics(tenant, key))
        # The keyword index's figures come from SQLite, read off the device worker (they scan its pages).
        library_id = engine.library(tenant, key).record.id
        stats["keyword_index"] = await asyncio.to_thread(engine.store.keyword_index_statistics, library_id)
        return stats

    async def upsert_documents(
        self, tenant: str, key: str, docs: list[DocumentInput], bulk: bool, deadline: float
    ) -> list[str]:
        return await self.engine.upsert_documents(tenant, key, docs, bulk=bulk, deadline=deadline)

    async def delete_document(self, tenant: str, key: str, doc_id: str) -> None:
        await self.engine.delete_document(tenant, key, doc_id)

    async def patch_document(self, tenant: str, key: str, doc_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        from arrwdb.engine.document_edits import patch_document

        return await patch_document(self.engine, tenant, key, doc_id, patch)

    async def delete_documents(
        self, tenant: str, key: str, ids: list[str] | None, filter_json: str | None, deadline: float
    ) -> int:
        from arrwdb.engine.document_edits import delete_documents

        return await delete_documents(self.engine, tenant, key, ids, filter_json, deadline)

    async def get_document(self, tenant: str, key: str, doc_id: str) -> dict[str, Any]:
        return await self.engine.get_document(tenant, key, doc_id)

    async def list_documents(
        self, tenant: str, key: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.engine.list_documents(tenant, key, limit, after)

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[HitsJSON], Timings]:
        results, timings = await self.engine.search(tenant, key, queries, deadline)
        return [hits if isinstance(hits, HitsJSON) else HitsJSON.of(hits) for hits in results], timings

    async def embed(self, texts: list[str], deadline: float, model: str | None = None) -> tuple[np.ndarray, Timings]:
        engine = self.engine
        engine.check_ready()
        return await engine.embed(list(texts), engine.embed_priority(len(texts)), deadline, model)

    async def embeddings(
        self, inputs: list[str | list[int]], model: str | None, deadline: float, dimensions: int | None = None
    ) -> tuple[np.ndarray, int, str, Timings]:
        return await self.engine.embeddings(list(inputs), model, deadline, dimensions)

    async def models(self) -> list[dict[str, Any]]:
        engine = self.engine
        engine.check_ready()
        rerankers = [
            {
                "id": name,
                "created": encoder.created,
                "dimension": None,
                "max_tokens": encoder.window,
                "default": False,
                "memory_bytes": encoder.memory_bytes,
                "kind": "rerank",
            }
            for name, encoder in engine.rerankers.items()
        ]
        return engine.models.describe() + rerankers

    async def rerank(
        self, query: str, documents: list[str], model: str | None, deadline: float
    ) -> tuple[np.ndarray, str, Timings]:
        return await self.engine.rerank(query, documents, deadline, model)

    async def create_api_key(self, record: dict[str, Any]) -> None:
        from arrwdb.store.api_keys import ApiKeyRecord

        await asyncio.to_thread(self.engine.store.create_api_key, ApiKeyRecord(**record))

    async def revoke_api_key(self, key_id: str) -> None:
        await asyncio.to_thread(self.engine.store.revoke_api_key, key_id)

    async def api_keys(self, tenant: str | None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self.engine.store.api_keys, tenant)
        return [key_record_body(r) for r in records]

    async def change_replicas(self, tenant: str, key: str, shard: int, engine: str, add: bool) -> dict[str, Any]:
        self.engine.library(tenant, key)  # an unknown library is a 404 first
        raise replicas_need_ray()

    async def cluster(self) -> dict[str, Any]:
        engine = self.engine
        me = {"name": "arrwdb-engine", "node": socket.gethostname(), "device": str(engine.device), "shards": []}
        return {"engines": [me]}

    async def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        engine = self.engine
        telemetry = engine.telemetry
        telemetry.device_busy.set(engine.worker.busy_fraction())
        if engine.device.type == "cuda":
            import torch

            telemetry.gpu_memory.set(torch.cuda.memory_allocated(engine.device))
        return generate_latest(telemetry.registry)  # type: ignore[no-any-return]
