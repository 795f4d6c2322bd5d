"""The engine's reranking: a cross-encoder's pairs batched by token budget on the device worker (one
queue, like embeddings: deadlines and aborts are the scheduler's), ``/v1/rerank``, and ``rerank`` in
search, which scores a query's top candidates and cuts to ``k`` after.

A mixin of ``Engine`` (arrwdb/engine/core.py), which owns ``rerankers``, ``scheduler``, ``settings``,
``telemetry`` and the worker threads' fitting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from arrwdb.errors import InvalidInput, UnknownModel, WorkerFailure
from arrwdb.library.inputs import Hit, SearchInput
from arrwdb.runtime.scheduler import PRIORITY_INTERACTIVE, QueueSpec
from arrwdb.runtime.timings import Timings

if TYPE_CHECKING:
    from arrwdb.config import Settings
    from arrwdb.embed.cross_encoder import CrossEncoder, Pair
    from arrwdb.library.hits_json import HitsJSON
    from arrwdb.runtime.device import WorkerThreads
    from arrwdb.runtime.scheduler import Scheduler
    from arrwdb.runtime.telemetry import Telemetry

Results = list[list[Hit] | Any]  # each query's hits (Hit objects, or rendered HitsJSON)


class RerankMixin:
    settings: Settings
    rerankers: dict[str, CrossEncoder]
    scheduler: Scheduler
    telemetry: Telemetry
    _threads: WorkerThreads
    _rerank_specs: dict[str, QueueSpec]
    check_ready: Callable[[], None]

    def reranker(self, model: str | None) -> tuple[str, CrossEncoder]:
        """The cross-encoder asked for (None: the one loaded); a clear 404 when there is none."""
        if not self.rerankers:
            raise UnknownModel("no reranking model is loaded: set ARRWDB_RERANK_MODEL to a cross-encoder directory")
        name = next(iter(self.rerankers)) if model is None else model
        found = self.rerankers.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in self.rerankers)
            raise UnknownModel(f"reranking model {model!r} is not loaded; the reranking models are {known}", "model")
        return name, found

    async def rerank(
        self, query: str, documents: list[str], deadline: float, model: str | None = None
    ) -> tuple[np.ndarray, str, Timings]:
        """Relevance scores of ``documents`` for ``query`` (float32, in input order) and the model's name."""
        self.check_ready()
        name, encoder = self.reranker(model)
        if not documents:
            return np.zeros(0, dtype=np.float32), name, Timings()
        spec = self._rerank_spec(name, encoder)
        pairs: list[Pair] = [(query, document) for document in documents]
        costs = [encoder.cost(query, document) for document in documents]
        done = await self.scheduler.submit_many(spec, pairs, deadline=deadline, costs=costs)
        scores = np.fromiter((completed.value for completed in done), dtype=np.float32, count=len(done))
        return scores, name, Timings.of(list(done))

    def _rerank_spec(self, name: str, encoder: CrossEncoder) -> QueueSpec:
        spec = self._rerank_specs.get(name)
        if spec is None:
            spec = self._rerank_specs[name] = QueueSpec(
                key=("rerank", name),
                kind="rerank",
                priority=PRIORITY_INTERACTIVE,
                run=lambda prepared: self._run_rerank(encoder, prepared),
                prepare=encoder.prepare,
                max_cost=self.settings.rerank_token_budget,
            )
        return spec

    def _run_rerank(self, encoder: CrossEncoder, prepared: Any) -> list[float]:
        self._threads.fit_embed(len(prepared), self.telemetry.requests_in_flight)
        with self.telemetry.working():
            return encoder.score_prepared(prepared).tolist()

    async def search_reranked(
        self,
        queries: list[SearchInput],
        search: Callable[[list[SearchInput]], Awaitable[tuple[Results, Timings]]],
        deadline: float,
    ) -> tuple[Results, Timings]:
        """Search for each reranked query's top ``candidates`` (with their texts), score them with the
        cross-encoder (every query's pairs at once, so they share batches), and keep the best ``k``."""
        for query in queries:
            if query.rerank is not None:
                check_rerank(query)
                self.reranker(query.rerank.model)  # a missing model is refused before any search
        inner = [
            q
            if q.rerank is None
            else replace(q, k=max(q.k, q.rerank.candidates), json=False, include_text=True, rerank=None)
            for q in queries
        ]
        results, timings = await search(inner)
        positions = [i for i, q in enumerate(queries) if q.rerank is not None]
        scored = await asyncio.gather(*(self._rerank_hits(queries[i], results[i], deadline) for i in positions))
        for position, (hits, rerank_timings) in zip(positions, scored, strict=True):
            results[position] = hits
            timings = timings + rerank_timings
        return results, timings

    async def _rerank_hits(self, query: SearchInput, hits: list[Hit] | HitsJSON, deadline: float) -> Any:
        rerank, text = query.rerank, query.query
        if rerank is None or text is None or not isinstance(hits, list):  # search_reranked checked both
            raise WorkerFailure("a reranked query reached the cross-encoder without its text or its hits")
        if not hits:
            return [], Timings()
        texts = [hit.text or "" for hit in hits]
        scores, _, timings = await self.rerank(text, texts, deadline, rerank.model)
        return reranked(query, hits, scores), timings


def check_rerank(query: SearchInput) -> None:
    """The rules of ``rerank`` in a search that need no model."""
    if query.query is None:
        raise InvalidInput("rerank needs the query's text (query), not only an embedding", "rerank")
    if query.retrieval is not None and query.retrieval.group_by is not None:
        raise InvalidInput("rerank cannot be combined with group_by (groups are formed after the cut)", "rerank")


def reranked(query: SearchInput, hits: list[Hit], scores: np.ndarray) -> list[Hit]:
    """The best ``query.k`` of ``hits`` by the cross-encoder's ``scores`` (ties keep the search order),
    scored by them; texts only where the query asked for them."""
    best = []
    for i in np.argsort(-scores, kind="stable")[: query.k]:
        hit = hits[int(i)]
        text = hit.text if query.include_text else None
        best.append(Hit(hit.document_id, hit.chunk_index, float(scores[i]), hit.title, text, hit.metadata))
    return best
