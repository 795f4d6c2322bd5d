"""The engine: libraries, documents, search and embedding, on top of the store, the scheduler and the
device worker.  No web imports: the HTTP layer validates JSON and calls these coroutines.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import torch

from arrwdb.config import Settings
from arrwdb.embed import EmbeddingCache
from arrwdb.embed.protocol import Embedder
from arrwdb.engine.embedding import EmbeddingMixin
from arrwdb.engine.models import ModelRegistry, load_configured_models, model_memory
from arrwdb.engine.rerank import RerankMixin
from arrwdb.engine.retrieval_search import RetrievalSearch
from arrwdb.engine.search_batch import Answers, SearchItem, answers_hits, is_short, run_search_batch
from arrwdb.engine.startup import DocumentLoader, load_library
from arrwdb.errors import Conflict, DeadlineExceeded, InvalidInput, NotFound, NotReady
from arrwdb.index.ann import AnnIndex
from arrwdb.library.chunk_plan import checked_embeddings, plan_chunks
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import DocumentInput, Hit, SearchInput
from arrwdb.library.library import LibraryState
from arrwdb.library.result_cache import ResultCache
from arrwdb.library.search_plan import query_blocks, stacked
from arrwdb.library.validation import check_library_settings, check_name
from arrwdb.records import AppliedWrite, ChunkRecord, Delete, DocumentRecord, LibraryRecord, Upsert
from arrwdb.runtime.device import WorkerThreads, model_dtype, resolve_device
from arrwdb.runtime.device_worker import DeviceWorker, await_on_worker
from arrwdb.runtime.scheduler import (
    PRIORITY_BULK,
    PRIORITY_INTERACTIVE,
    PRIORITY_WRITE,
    QueueSpec,
    Scheduler,
)
from arrwdb.runtime.telemetry import Telemetry
from arrwdb.runtime.timings import Timings
from arrwdb.store.store import Store, new_library_record

log = logging.getLogger("arrwdb.engine.core")

EmbedderFactory = Callable[[torch.device], Embedder]


def _default_embedder(device: torch.device, precision: str = "auto") -> Embedder:
    from arrwdb.embed.loader import load_embedder

    return load_embedder(device, dtype=model_dtype(device, precision))  # fp16 on CUDA, bf16 with AMX or AVX-512 BF16


class Engine(EmbeddingMixin, RerankMixin):
    def __init__(self, settings: Settings, embedder_factory: EmbedderFactory | None = None) -> None:
        self.settings = settings
        self.telemetry = Telemetry()
        self.device = resolve_device(settings.device)
        self.store = Store(settings.data_dir / "arrwdb.sqlite3")
        self.cache = EmbeddingCache(settings.embed_cache_bytes)
        self.result_cache = ResultCache(settings.result_cache_bytes)
        self.libraries: dict[str, LibraryState] = {}
        self.embedder: Embedder | None = None  # the default model
        self.models = ModelRegistry()
        self.rerankers: dict[str, Any] = {}  # name -> CrossEncoder (ARRWDB_RERANK_MODEL)
        self._rerank_specs: dict[str, QueueSpec] = {}
        self.ready = False
        self.load_error: BaseException | None = None
        precision = settings.embed_precision
        self._embedder_factory = embedder_factory or (lambda device: _default_embedder(device, precision))
        self._threads = WorkerThreads(settings.torch_threads, self.device)
        self.worker = DeviceWorker(setup=self._setup_worker, lanes=self._threads.adaptive)
        self.telemetry.device_info.labels(str(self.device)).set(1)
        self.telemetry.result_cache_bytes.set_function(lambda: self.result_cache.nbytes)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker and begin loading; ``ready`` turns True when the model and indexes serve."""
        from arrwdb.engine.index_builder import IndexBuilder
        from arrwdb.store.writer import GroupCommitter

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
        idle = (self.telemetry.searches_idle, s.build_threads_idle)
        self.builder = IndexBuilder(self.worker, self.libraries, s.data_dir / "indexes", s.build_threads, *idle)
        self.committer = GroupCommitter(
            self.store, self.worker, self._apply_writes, self.telemetry, max_requests_per_commit=s.commit_max_requests
        )
        self._embed_specs: dict[tuple[str, int], QueueSpec] = {}  # (model, priority) -> its queue
        self.documents = DocumentLoader(self.store, self.worker, self.loop)
        self.retrieval = RetrievalSearch(self)
        self._loading = asyncio.create_task(self._load())

    async def wait_ready(self) -> None:
        await self._loading

    async def _load(self) -> None:
        try:
            # The model loads on a thread of its own while the worker loads the libraries and the
            # builder reads their index snapshots: a cold start overlaps all three.
            model = asyncio.ensure_future(asyncio.to_thread(self._load_models))
            try:
                records = self.store.libraries()
                for record in records:
                    self.builder.prefetch(record)
                for record in records:
                    await self.on_worker(lambda record=record: self._load_library(record))
            finally:
                self.embedder, extra, self.rerankers = await model
                self.models.add(self.embedder)
                for name, embedder in extra.items():
                    self.models.add(embedder, name)
                self.models.allow_shortening(self.settings.matryoshka_model_names())
                for name, embedder in [*self.models.embedders.items(), *self.rerankers.items()]:
                    self.telemetry.model_memory.labels(name).set(model_memory(embedder))
            await self.on_worker(self._warm_up)
            self.ready = True
            self.documents.start(list(self.libraries.values()))
            log.info("ready: %d libraries on %s", len(self.libraries), self.device)
        except BaseException as exc:
            self.load_error = exc
            log.exception("start-up failed")

    def _load_models(self) -> tuple[Embedder, dict[str, Embedder], dict[str, Any]]:
        """The default model, each of ARRWDB_MODELS (by name) and the reranker, on the one device."""
        return self._embedder_factory(self.device), *load_configured_models(self.settings, self.device)

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
        self._threads.fit(0, large_from=1)  # small work until a batch says otherwise

    def _load_library(self, record: LibraryRecord) -> None:
        state = load_library(record, self.device, self.store, self.builder.vectors_path(record.id))
        self.libraries[record.id] = state
        self._attach_builder(state, load_snapshot=True)
        if self.device.type == "cuda":
            from arrwdb.engine.warmup import report_placement

            report_placement(record.name, state.index)

    def _warm_up(self) -> None:
        from arrwdb.engine import warmup

        warmup.report_faiss(self.device)
        dimensions = {s.record.dimension for s in self.libraries.values()} | {self.model.dimension}
        warmup.warm_up(self.device, self.embedder, dimensions, self.settings.max_batch_size)

    def _attach_builder(self, state: LibraryState, load_snapshot: bool) -> None:
        library_id = state.record.id
        if isinstance(state.index, AnnIndex):
            state.index.set_build_requester(lambda: self.builder.request_build(library_id))
            if load_snapshot:
                self.builder.request_load(library_id)
        state.set_vector_snapshot_requester(lambda: self.builder.request_vectors(library_id))  # after the load

    async def on_worker(self, fn: Callable[[], Any]) -> Any:
        return await await_on_worker(self.worker, self.loop, fn)

    @property
    def model(self) -> Embedder:
        if self.embedder is None:
            raise NotReady("the embedding model is still loading")
        return self.embedder

    def library_model(self, record: LibraryRecord) -> Embedder:
        """The model that embeds a library's texts; a 404 naming the loaded ones if it is not loaded."""
        return self.models.get(record.model or None)

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
        model: str | None = None,
    ) -> LibraryState:
        self.check_ready()
        check_name(name, "name")
        model_name = self.models.name_of(model)
        model_dimension = self.models.embedders[model_name].dimension
        if model is not None and dimension is not None and dimension != model_dimension:
            raise InvalidInput(
                f"dimension {dimension} differs from model {model_name!r}'s {model_dimension}: a library's "
                "dimension follows its model (leave dimension out)",
                param="dimension",
            )
        dimension = model_dimension if dimension is None else dimension
        params = check_library_settings(dimension, index_type, metric, index_params)
        record = new_library_record(uuid.uuid4().hex, tenant, name, dimension, index_type, metric, params, model_name)
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
        given = checked_embeddings(record, docs)  # the client vectors, float32, checked
        # The library's model, looked up only when some text needs embedding (vectors need no model).
        embedder = self.library_model(record) if any(doc.embedding is None for doc in docs) else self.model
        planned = [plan_chunks(record, doc, index, embedder) for index, doc in enumerate(docs)]
        texts = [text for plan in planned if plan[1] is not None for text in plan[1]]
        priority = PRIORITY_BULK if bulk else PRIORITY_WRITE
        vectors, _ = await self.embed(texts, priority, deadline, record.model or None)
        upserts, cursor = [], 0
        for doc_id, doc, vector, (spans, chunk_texts) in zip(ids, docs, given, planned, strict=True):
            if chunk_texts is None:  # the client's vector: one chunk, the whole text
                ((start, end),) = spans
                chunks: tuple[ChunkRecord, ...] = (ChunkRecord(0, start, end, vector),)  # type: ignore[arg-type]
            else:
                chunks = tuple(ChunkRecord(i, start, end, vectors[cursor + i]) for i, (start, end) in enumerate(spans))
                cursor += len(chunk_texts)
            upserts.append(Upsert(DocumentRecord(doc_id, doc.title, doc.text, doc.metadata, vector, chunks)))
        if time.monotonic() >= deadline:
            raise DeadlineExceeded("the request's deadline passed before its commit")
        await self.committer.write(record.id, upserts)
        return ids

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
        """Runs on the device worker, in commit order: each run of writes to one library at once."""
        for library_id, run in itertools.groupby(writes, key=lambda write: write.library_id):
            state = self.libraries.get(library_id)
            if state is not None:
                state.apply(list(run))

    # -- search ------------------------------------------------------------------------------

    async def search(
        self, tenant: str, key: str, queries: list[SearchInput], deadline: float
    ) -> tuple[list[list[Hit] | HitsJSON], Timings]:
        """Hits of each query, best first (as JSON for a query that asks: ``SearchInput.json``).  Queries
        answered from the result cache cost no embedding and no device time: they add nothing to the
        returned timings (all zero when every one hits).  Reranked queries: ``search_reranked``."""
        self.check_ready()
        if any(query.rerank is not None for query in queries):
            plain = lambda inner: self.search(tenant, key, inner, deadline)  # noqa: E731
            return await self.search_reranked(queries, plain, deadline)
        state = self.library(tenant, key)
        if any(query.retrieval is not None for query in queries):
            return await self.retrieval.search(state, queries, deadline)  # type: ignore[return-value]
        return await self.search_vectors(state, queries, deadline)

    async def search_vectors(
        self, state: LibraryState, queries: list[SearchInput], deadline: float
    ) -> tuple[list[list[Hit] | HitsJSON], Timings]:
        """``search`` of plain vector queries (and the vector leg of the others)."""
        record = state.record
        vectors = self.given_vectors(record, queries)
        if not state.documents_loaded and any(query.filter is not None for query in queries):
            await self.documents.wait(record.id, deadline)  # right after a restart
        keys, results = self.result_cache.lookup(state, queries)
        if self.result_cache.enabled:
            hits = sum(found is not None for found in results)
            self.telemetry.result_cache_hits.inc(hits)
            self.telemetry.result_cache_misses.inc(len(queries) - hits)
        pending = [i for i, hits in enumerate(results) if hits is None]
        timings = await self.embed_queries(record, queries, vectors, pending, deadline)
        blocks = query_blocks(queries, pending, self.scheduler.max_batch_size)
        items = [SearchItem(record.id, stacked([vectors[i] for i in block]), queries[block[0]]) for block in blocks]
        spec, costs = self._search_spec(record.id), [item.rows for item in items]
        done = await self.scheduler.submit_many(spec, items, deadline=deadline, costs=costs) if items else []
        for block, completed in zip(blocks, done, strict=True):
            for position, found in zip(block, completed.value, strict=True):
                results[position] = found
                cache_key = keys[position]
                if cache_key is not None:
                    self.result_cache.put(cache_key, found)
        return [hits or [] for hits in results], timings + Timings.of(list(done))

    def _search_spec(self, library_id: str) -> QueueSpec:
        # An item's cost is its number of queries, and the batch's size counts those: ARRWDB_MAX_BATCH_SIZE
        # bounds the queries of a batch, however they arrived.
        return QueueSpec(
            key=("search", library_id),
            kind="search",
            priority=PRIORITY_INTERACTIVE,
            run=self.run_search,
            max_cost=self.scheduler.max_batch_size,
            size_is_cost=True,
            finish=answers_hits,
            short=functools.partial(is_short, self.libraries) if self.device.type == "cpu" else None,
        )

    def run_search(self, items: list[SearchItem]) -> Answers:
        """One search batch, on the device worker."""
        self._threads.fit_search(sum(item.rows for item in items), self.telemetry.requests_in_flight)
        with self.telemetry.working():
            return run_search_batch(self.libraries, self.store, items)

    # -- figures -----------------------------------------------------------------------------

    def statistics(self, tenant: str, key: str) -> dict[str, Any]:
        self.check_ready()
        state = self.library(tenant, key)
        stats = state.statistics()
        # Where this library is (a library too big for the GPU stays on the CPU), and what it holds there.
        stats["device"] = stats["index"].get("device", str(self.device))
        stats["gpu_memory_bytes"] = int(stats["index"].get("gpu_memory_bytes", 0))
        # Its model, and that model's weights on the device (shared by every library of the model).
        model = state.record.model or self.models.default
        embedder = self.models.embedders.get(model or "")
        stats["model"] = model
        stats["model_memory_bytes"] = 0 if embedder is None else model_memory(embedder)
        return stats
