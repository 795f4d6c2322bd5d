"""The engine's embedding: every model's queues, the embedding cache, and the OpenAI-style call.

A mixin of ``Engine`` (arrwdb/engine/core.py), which owns the attributes used here: ``models``, ``cache``,
``scheduler``, ``settings``, ``telemetry`` and the worker threads' fitting.  Search queries given as
text are embedded here too (``given_vectors``, ``embed_queries``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np

from arrwdb.embed.chunking import token_estimate
from arrwdb.embed.protocol import Embedder, Item, LaneEmbedder
from arrwdb.embed.tokens import TokenizedText
from arrwdb.engine.models import check_token_inputs, output_dimension, shorten
from arrwdb.library.search_plan import query_vectors
from arrwdb.runtime.scheduler import PRIORITY_BULK, PRIORITY_INTERACTIVE, QueueSpec
from arrwdb.runtime.timings import Timings

if TYPE_CHECKING:
    from arrwdb.config import Settings
    from arrwdb.embed import EmbeddingCache
    from arrwdb.engine.models import ModelRegistry
    from arrwdb.library.inputs import SearchInput
    from arrwdb.records import LibraryRecord
    from arrwdb.runtime.device import WorkerThreads
    from arrwdb.runtime.scheduler import Scheduler
    from arrwdb.runtime.telemetry import Telemetry

_BULK_EMBED_TEXTS = 32  # /v1/embed calls larger than this yield to interactive work


class EmbeddingMixin:
    settings: Settings
    models: ModelRegistry
    cache: EmbeddingCache
    scheduler: Scheduler
    telemetry: Telemetry
    _threads: WorkerThreads
    _embed_specs: dict[tuple[str, int], QueueSpec]
    check_ready: Callable[[], None]
    library_model: Callable[[LibraryRecord], Embedder]

    def given_vectors(self, record: LibraryRecord, queries: list[SearchInput]) -> list[np.ndarray | None]:
        """Each query's vector as given (checked against the library), None for a text to embed."""
        text_queries = any(query.embedding is None for query in queries)
        model_dimension = self.library_model(record).dimension if text_queries else record.dimension
        return query_vectors(record, queries, model_dimension)

    async def embed_queries(
        self, record: LibraryRecord, queries: list[SearchInput], vectors: list[Any], at: list[int], deadline: float
    ) -> Timings:
        """Fill in the vectors of the text queries among positions ``at`` with the library's model."""
        text_positions = [i for i in at if vectors[i] is None]
        if not text_positions:
            return Timings()
        texts = [queries[i].query or "" for i in text_positions]
        embedded, timings = await self.embed(texts, PRIORITY_INTERACTIVE, deadline, record.model or None)
        for row, position in enumerate(text_positions):
            vectors[position] = embedded[row]
        return timings

    async def embed(
        self, texts: list[Item], priority: int, deadline: float, model: str | None = None
    ) -> tuple[np.ndarray, Timings]:
        """Vectors of ``texts`` (or token-id inputs) by ``model`` (None: the default), normalised when
        the model's directory says so (the packaged MiniLM's does); cached texts skip the device.  Each
        model has its own queues: a batch never mixes models."""
        self.check_ready()
        name = self.models.name_of(model)
        embedder = self.models.embedders[name]
        out = np.empty((len(texts), embedder.dimension), dtype=np.float32)
        if not texts:
            return out, Timings()
        # The cache holds texts of every model: a key is the text, prefixed by the model's name unless it
        # is the default.  Token-id inputs are not cached.
        prefix = "" if name == self.models.default else f"{name}\x00"
        keys = [prefix + t if isinstance(t, str) else None for t in texts]
        looked_up = [i for i, key in enumerate(keys) if key is not None]
        cached = self.cache.get_many([keys[i] for i in looked_up])  # type: ignore[misc]
        found = {i: vector for i, vector in zip(looked_up, cached, strict=True) if vector is not None}
        missing = [i for i in range(len(texts)) if i not in found]
        self.telemetry.embed_cache_hits.inc(len(found))
        self.telemetry.embed_cache_misses.inc(len(missing))
        for i, vector in found.items():
            out[i] = vector
        if not missing:
            return out, Timings()
        spec = self._embed_spec(name, priority)
        texts_missing = [texts[i] for i in missing if isinstance(texts[i], str)]
        by_worker = sum(
            isinstance(t, TokenizedText) and t.by_worker and t.tokenizer == embedder.tokenizer_id for t in texts_missing
        )
        self.telemetry.tokenized_by_worker.inc(by_worker)
        self.telemetry.tokenized_by_engine.inc(len(texts_missing) - by_worker)
        costs = [token_estimate(t) if isinstance(t, str) else len(t) + 2 for t in (texts[i] for i in missing)]
        done = await self.scheduler.submit_many(spec, [texts[i] for i in missing], deadline=deadline, costs=costs)
        for i, completed in zip(missing, done, strict=True):
            out[i] = completed.value
        stored = [i for i in missing if keys[i] is not None]
        self.cache.put_many([keys[i] for i in stored], [out[i] for i in stored])  # type: ignore[misc]
        return out, Timings.of(list(done))

    def embed_priority(self, count: int) -> int:
        return PRIORITY_INTERACTIVE if count <= _BULK_EMBED_TEXTS else PRIORITY_BULK

    def _embed_spec(self, model: str, priority: int) -> QueueSpec:
        """The queue of ``model``'s embeddings at ``priority``: top-ups stay within one model."""
        spec = self._embed_specs.get((model, priority))
        if spec is None:
            embedder = self.models.embedders[model]
            # Whether the model may hand a batch to its lanes, decided once here, not per batch.
            in_lanes = embedder.start_in_lanes if isinstance(embedder, LaneEmbedder) else None
            spec = self._embed_specs[(model, priority)] = QueueSpec(
                key=("embed", model, priority),
                kind="embed",
                priority=priority,
                run=lambda prepared: self._run_embed(embedder, prepared, in_lanes),
                prepare=embedder.prepare,
                max_cost=self.settings.embed_token_budget,
                hands_off=in_lanes is not None,
                # Single inserts ride along in query batches; bulk work never delays an interactive one.
                top_up=None if priority == PRIORITY_BULK else f"embed:{model}",
            )
        return spec

    def _run_embed(
        self,
        embedder: Embedder,
        prepared: Any,
        in_lanes: Callable[[Any], Future[np.ndarray] | None] | None = None,
    ) -> list[np.ndarray] | Future[np.ndarray]:
        """The batch's vectors; or, for a batch a CPU embeds in lanes (``in_lanes``: the model's
        ``start_in_lanes``), their future (the device worker goes on with its next job meanwhile:
        ``BatchJob.run``)."""
        self._threads.fit_embed(len(prepared), self.telemetry.requests_in_flight)
        with self.telemetry.working():
            handed = in_lanes(prepared) if in_lanes is not None else None
            return handed if handed is not None else list(embedder.embed_prepared(prepared))

    async def embeddings(
        self, inputs: list[Item], model: str | None, deadline: float, dimensions: int | None = None
    ) -> tuple[np.ndarray, int, str, Timings]:
        """An OpenAI-style embeddings call: the vectors (shortened to ``dimensions`` for a Matryoshka
        model), the tokens the model read, and its name."""
        self.check_ready()
        name = self.models.name_of(model)
        embedder = self.models.embedders[name]
        length = output_dimension(embedder, name, dimensions, name in self.models.matryoshka)
        check_token_inputs(embedder, inputs)
        tokens = sum(embedder.token_counts(inputs))
        vectors, timings = await self.embed(inputs, self.embed_priority(len(inputs)), deadline, name)
        return shorten(vectors, length), tokens, name, timings
