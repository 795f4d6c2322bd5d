"""The engine: libraries, documents, search and embedding, on top of the store, the scheduler and the
device worker.  No web imports: the HTTP layer validates JSON and calls these coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from arrwdb.config import Settings
from arrwdb.device import resolve_device
from arrwdb.embed import EmbeddingCache
from arrwdb.embed.protocol import Embedder
from arrwdb.errors import Conflict, DeadlineExceeded, InvalidInput, NotFound, NotReady
from arrwdb.index.ann import AnnIndex
from arrwdb.inputs import DocumentInput, Hit, SearchInput
from arrwdb.library import LibraryState
from arrwdb.records import AppliedWrite, ChunkRecord, Delete, DocumentRecord, LibraryRecord, Upsert
from arrwdb.scheduler import (
    PRIORITY_BULK,
    PRIORITY_INTERACTIVE,
    PRIORITY_WRITE,
    Completed,
    QueueSpec,
    Scheduler,
)
from arrwdb.search_batch import SearchItem, run_search_batch
from arrwdb.store import Store, new_library_record
from arrwdb.telemetry import Telemetry
from arrwdb.validation import check_k, check_library_settings, check_name, check_query_params, check_vector
from arrwdb.worker import DeviceWorker

log = logging.getLogger("arrwdb.engine")

EmbedderFactory = Callable[[torch.device], Embedder]
_BULK_EMBED_TEXTS = 32  # /v1/embed calls larger than this yield to interactive work


@dataclass(frozen=True)
class Timings:
    """What the response headers report: the slowest stage of the request's items."""

    queue_ms: float = 0.0
    compute_ms: float = 0.0
    batch_size: int = 0

    @staticmethod
    def of(done: list[Completed]) -> Timings:
        if not done:
            return Timings()
        return Timings(max(c.queue_ms for c in done), max(c.compute_ms for c in done), max(c.batch_size for c in done))

    def __add__(self, other: Timings) -> Timings:
        return Timings(
            self.queue_ms + other.queue_ms,
            self.compute_ms + other.compute_ms,
            max(self.batch_size, other.batch_size),
        )


class _CallJob:
    """A one-off function run on the device worker (loading, library set-up)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> None:
        self.loop = loop
        self.fn = fn
        self.future: asyncio.Future[Any] = loop.create_future()

    def run(self) -> None:
        result = self.fn()
        self.loop.call_soon_threadsafe(_settle, self.future, result, None)

    def fail(self, exc: BaseException) -> None:
        self.loop.call_soon_threadsafe(_settle, self.future, None, exc)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _default_embedder(device: torch.device) -> Embedder:
    from arrwdb.embed.loader import load_embedder

    return load_embedder(device)


class Engine:
    def __init__(self, settings: Settings, embedder_factory: EmbedderFactory | None = None) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self.device = resolve_device(settings.device)
        self.store = Store(settings.data_dir / "arrwdb.sqlite3")
        self.cache = EmbeddingCache(settings.embed_cache_bytes)
        self.libraries: dict[str, LibraryState] = {}
        self.embedder: Embedder | None = None
        self.ready = False
        self.load_error: BaseException | None = None
        self._embedder_factory = embedder_factory or _default_embedder
        self.worker = DeviceWorker(setup=self._setup_worker)
        self.telemetry.device_info.labels(str(self.device)).set(1)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker and begin loading; ``ready`` turns True when the model and indexes serve."""
        from arrwdb.builder import IndexBuilder
        from arrwdb.writer import GroupCommitter

        self.loop = asyncio.get_running_loop()
        self.worker.start()
        s = self.settings
        self.scheduler = Scheduler(
            self.worker,
            self.telemetry,
            max_batch_size=s.max_batch_size,
            max_batch_wait_ms=s.max_batch_wait_ms,
            max_queue=s.max_queue,
        )
        self.builder = IndexBuilder(self.worker, self.libraries, s.data_dir / "indexes", threads=s.build_threads)
        self.committer = GroupCommitter(
            self.store, self.worker, self._apply_writes, self.telemetry, max_requests_per_commit=s.max_batch_size
        )
        self._embed_specs = {
            priority: QueueSpec(
                key=("embed", priority),
                kind="embed",
                priority=priority,
                run=self._run_embed,
                prepare=self._prepare_embed,
                max_cost=s.embed_token_budget,
            )
            for priority in (PRIORITY_INTERACTIVE, PRIORITY_WRITE, PRIORITY_BULK)
        }
        self._loading = asyncio.create_task(self._load())

    async def wait_ready(self) -> None:
        await self._loading

    async def _load(self) -> None:
        try:
            await self.on_worker(self._load_embedder)
            for record in self.store.libraries():
                await self.on_worker(lambda record=record: self._load_library(record))
            self.ready = True
            log.info("ready: %d libraries on %s", len(self.libraries), self.device)
        except BaseException as exc:
            self.load_error = exc
            log.exception("start-up failed")

    async def stop(self) -> None:
        self.ready = False
        if hasattr(self, "committer"):
            await asyncio.to_thread(self.committer.stop)
        if hasattr(self, "builder"):
            await asyncio.to_thread(self.builder.stop)
        if hasattr(self, "scheduler"):
            self.scheduler.close()
        await asyncio.to_thread(self.worker.stop)
        self.store.close()

    def _setup_worker(self) -> None:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)

    def _load_embedder(self) -> None:
        self.embedder = self._embedder_factory(self.device)

    def _load_library(self, record: LibraryRecord) -> None:
        state = LibraryState(record, self.device)
        for row_ids, vectors in self.store.iter_vectors(record.id, record.dimension):
            state.load(row_ids, vectors)
        for doc_id, metadata, rows in self.store.iter_document_rows(record.id):
            state.load_document(doc_id, metadata, rows)
        self.libraries[record.id] = state
        self._attach_builder(state, load_snapshot=True)

    def _attach_builder(self, state: LibraryState, load_snapshot: bool) -> None:
        if isinstance(state.index, AnnIndex):
            library_id = state.record.id
            state.index.set_build_requester(lambda: self.builder.request_build(library_id))
            if load_snapshot:
                self.builder.request_load(library_id)

    async def on_worker(self, fn: Callable[[], Any]) -> Any:
        job = _CallJob(self.loop, fn)
        self.worker.submit(job)
        return await job.future

    @property
    def model(self) -> Embedder:
        if self.embedder is None:
            raise NotReady("the embedding model is still loading")
        return self.embedder

    def check_ready(self) -> None:
        if not self.ready:
            reason = f": start-up failed ({self.load_error!r})" if self.load_error else ": still loading"
            raise NotReady("the server is not ready" + reason)
        if not self.worker.alive:
            raise NotReady("the device worker is not running")

    def deadline(self, timeout_ms: float | None = None) -> float:
        limit = self.settings.request_timeout_ms
        chosen = limit if timeout_ms is None else min(timeout_ms, limit)
        return time.monotonic() + chosen / 1000.0

    # -- libraries ---------------------------------------------------------------------------

    def library(self, tenant: str, key: str) -> LibraryState:
        """A library of ``tenant`` by id or name; another tenant's library is NotFound."""
        state = self.libraries.get(key)
        if state is not None and state.record.tenant == tenant:
            return state
        for state in self.libraries.values():
            if state.record.tenant == tenant and state.record.name == key:
                return state
        raise NotFound(f"library {key!r} not found")

    def list_libraries(self, tenant: str) -> list[LibraryState]:
        states = [s for s in self.libraries.values() if s.record.tenant == tenant]
        return sorted(states, key=lambda s: (s.record.created_at, s.record.id))

    async def create_library(
        self,
        tenant: str,
        name: str,
        dimension: int | None,
        index_type: str,
        metric: str,
        index_params: dict[str, Any],
    ) -> LibraryState:
        self.check_ready()
        check_name(name, "name")
        dimension = self.model.dimension if dimension is None else dimension
        params = check_library_settings(dimension, index_type, metric, index_params)
        record = new_library_record(uuid.uuid4().hex, tenant, name, dimension, index_type, metric, params)
        if any(s.record.tenant == tenant and s.record.name == name for s in self.libraries.values()):
            raise Conflict(f"a library named {name!r} already exists")
        await asyncio.to_thread(self.store.create_library, record)
        state = LibraryState(record, self.device)
        self._attach_builder(state, load_snapshot=False)
        self.libraries[record.id] = state
        return state

    async def delete_library(self, tenant: str, key: str) -> None:
        self.check_ready()
        state = self.library(tenant, key)
        await asyncio.to_thread(self.store.delete_library, state.record.id)
        self.libraries.pop(state.record.id, None)
        self.builder.forget(state.record.id)

    # -- documents ---------------------------------------------------------------------------

    async def upsert_documents(
        self, tenant: str, key: str, docs: list[DocumentInput], *, bulk: bool, deadline: float
    ) -> list[str]:
        self.check_ready()
        state = self.library(tenant, key)
        record = state.record
        ids = [doc.id or uuid.uuid4().hex for doc in docs]
        docs = [self._checked_embedding(record, doc, i) for i, doc in enumerate(docs)]
        planned = [self._plan_chunks(record, doc, index) for index, doc in enumerate(docs)]
        texts = [text for plan in planned if plan[1] is not None for text in plan[1]]
        vectors, _ = await self.embed(texts, PRIORITY_BULK if bulk else PRIORITY_WRITE, deadline)
        records, cursor = [], 0
        for doc_id, doc, (spans, chunk_texts) in zip(ids, docs, planned, strict=True):
            if chunk_texts is None:
                chunk_vectors = [doc.embedding]
            else:
                chunk_vectors = list(vectors[cursor : cursor + len(chunk_texts)])
                cursor += len(chunk_texts)
            chunks = tuple(
                ChunkRecord(i, start, end, np.asarray(v, dtype=np.float32))
                for i, ((start, end), v) in enumerate(zip(spans, chunk_vectors, strict=True))
            )
            embedding = None if doc.embedding is None else doc.embedding.tolist()
            records.append(DocumentRecord(doc_id, doc.title, doc.text, doc.metadata, embedding, chunks))
        if time.monotonic() >= deadline:
            raise DeadlineExceeded("the request's deadline passed before its commit")
        await self.committer.write(record.id, [Upsert(r) for r in records])
        return ids

    @staticmethod
    def _checked_embedding(record: LibraryRecord, doc: DocumentInput, position: int) -> DocumentInput:
        if doc.embedding is None:
            return doc
        vector = check_vector(doc.embedding, record.dimension, record.metric, f"documents[{position}].embedding")
        return replace(doc, embedding=vector)

    def _plan_chunks(
        self, record: LibraryRecord, doc: DocumentInput, position: int
    ) -> tuple[list[tuple[int, int]], list[str] | None]:
        """Chunk spans of a document, and the texts to embed (None when the client gave a vector)."""
        where = f"documents[{position}]"
        if doc.embedding is not None:
            return [(0, len(doc.text or ""))], None
        if doc.text is None or not doc.text.strip():
            raise InvalidInput(f"{where} needs a non-empty text or an embedding")
        embedder = self.model
        if record.dimension != embedder.dimension:
            raise InvalidInput(
                f"{where}: library {record.name!r} has dimension {record.dimension}, not the model's "
                f"{embedder.dimension}: give an embedding"
            )
        spans = embedder.chunk_spans(doc.text)
        return spans, [doc.text[start:end] for start, end in spans]

    async def delete_document(self, tenant: str, key: str, doc_id: str) -> None:
        self.check_ready()
        state = self.library(tenant, key)
        await self.committer.write(state.record.id, [Delete(doc_id)])

    async def get_document(self, tenant: str, key: str, doc_id: str) -> dict[str, Any]:
        self.check_ready()
        record = self.library(tenant, key).record
        return await asyncio.to_thread(self.store.get_document, record.id, doc_id, record.dimension)

    async def list_documents(
        self, tenant: str, key: str, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        self.check_ready()
        record = self.library(tenant, key).record
        return await asyncio.to_thread(self.store.list_documents, record.id, limit, after, record.dimension)

    def _apply_writes(self, writes: list[AppliedWrite]) -> None:
        """Runs on the device worker, in commit order."""
        for write in writes:
            state = self.libraries.get(write.library_id)
            if state is not None:
                state.apply(write)

    # -- embedding ---------------------------------------------------------------------------

    async def embed(self, texts: list[str], priority: int, deadline: float) -> tuple[np.ndarray, Timings]:
        """Normalised vectors of ``texts``; cached texts skip the device."""
        self.check_ready()
        embedder = self.model
        out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
        if not texts:
            return out, Timings()
        cached = self.cache.get_many(texts)
        missing = [i for i, vector in enumerate(cached) if vector is None]
        self.telemetry.embed_cache_hits.inc(len(texts) - len(missing))
        self.telemetry.embed_cache_misses.inc(len(missing))
        for i, vector in enumerate(cached):
            if vector is not None:
                out[i] = vector
        if not missing:
            return out, Timings()
        spec = self._embed_specs[priority]
        done = await asyncio.gather(
            *(self.scheduler.submit(spec, texts[i], deadline=deadline, cost=_token_estimate(texts[i])) for i in missing)
        )
        for i, completed in zip(missing, done, strict=True):
            out[i] = completed.value
        self.cache.put_many([texts[i] for i in missing], [out[i] for i in missing])
        return out, Timings.of(list(done))

    def embed_priority(self, count: int) -> int:
        return PRIORITY_INTERACTIVE if count <= _BULK_EMBED_TEXTS else PRIORITY_BULK

    def _prepare_embed(self, texts: list[str]) -> Any:
        return self.model.prepare(texts)

    def _run_embed(self, prepared: Any) -> list[np.ndarray]:
        return list(self.model.embed_prepared(prepared))

    # -- search ------------------------------------------------------------------------------

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[list[Hit]], Timings]:
        self.check_ready()
        record = self.library(tenant, key).record
        vectors: list[np.ndarray | None] = []
        text_positions: list[int] = []
        for position, query in enumerate(queries):
            where = f"queries[{position}]" if len(queries) > 1 else "query"
            check_k(query.k, where)
            check_query_params(query.params, where)
            if query.embedding is not None:
                vectors.append(check_vector(query.embedding, record.dimension, record.metric, f"{where}.embedding"))
                continue
            if record.dimension != self.model.dimension:
                raise InvalidInput(
                    f"library {record.name!r} has dimension {record.dimension}, not the model's: "
                    "search it with an embedding"
                )
            vectors.append(None)
            text_positions.append(position)
        timings = Timings()
        if text_positions:
            embedded, timings = await self.embed(
                [queries[i].query or "" for i in text_positions], PRIORITY_INTERACTIVE, deadline
            )
            for row, position in enumerate(text_positions):
                vectors[position] = embedded[row]
        spec = QueueSpec(key=("search", record.id), kind="search", priority=PRIORITY_INTERACTIVE, run=self._run_search)
        done = await asyncio.gather(
            *(
                self.scheduler.submit(spec, SearchItem(record.id, vector, query), deadline=deadline)
                for vector, query in zip(vectors, queries, strict=True)
            )
        )
        return [c.value for c in done], timings + Timings.of(list(done))

    def _run_search(self, items: list[SearchItem]) -> list[list[Hit] | Exception]:
        return run_search_batch(self.libraries, self.store, items)

    # -- figures -----------------------------------------------------------------------------

    def statistics(self, tenant: str, key: str) -> dict[str, Any]:
        self.check_ready()
        stats = self.library(tenant, key).statistics()
        stats["device"] = str(self.device)
        return stats


def _token_estimate(text: str) -> int:
    # Word pieces run about 4 characters; the model reads at most 256 tokens.
    return min(256, 2 + len(text) // 4)
