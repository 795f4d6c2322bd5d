"""Searches of a sharded library: gathered into micro-batches, fanned out once per shard per batch, and
merged into the answers one engine over all the rows gives.

Batching: while a library's fan-out is in flight, its new searches wait; when it returns they leave
together (at most ``max_batch`` queries), so each shard gets one Ray call per batch however many
requests there are (Ray's actor calls cost about a millisecond each: one per query would cap the
cluster far below one engine).

Exact merge (``arrwdb.cluster.sharding``): each shard is asked for as many hits as the answer needs
over all rows, so the merged best are the global best.  Query texts are embedded once (on the
library's first shard's engine), not once per shard.  What the options need:
- a plain vector search: each shard's best ``k``, merged;
- keyword, hybrid, thresholds, offsets, groups: each leg's candidates from every shard (``leg_size``,
  as one engine takes them), merged per leg, then fused, thresholded, cut and grouped here with the
  engine's own functions (``arrwdb.library.retrieval``).  BM25 scores use each shard's term statistics (as
  Elasticsearch's default ``query_then_fetch``): keyword legs can rank differently from one engine's;
- rerank: the candidates merged first, then scored by the cross-encoder once, as one engine does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from arrwdb.cluster.sharding import as_hits, merge_hits, shard_name
from arrwdb.engine.rerank import check_rerank, reranked
from arrwdb.errors import ArrwdbError, InvalidInput
from arrwdb.ipc import wire
from arrwdb.library.hits_json import JSON_OPTIONS, HitsJSON
from arrwdb.library.inputs import Hit, Retrieval, SearchInput
from arrwdb.library.retrieval import finish, fuse, leg_size, render
from arrwdb.runtime.timings import Timings

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine

Entry = dict[str, Any]

Answer = tuple[list[HitsJSON], Timings]


@dataclass
class _Request:
    entry: Entry
    queries: list[SearchInput]
    deadline: float
    done: asyncio.Future[Answer] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Plan:
    """How one query's answer is made from the shards' answers to the queries sent."""

    query: SearchInput
    vector_at: int = -1  # position of its vector leg among the queries sent (-1: none)
    keyword_at: int = -1
    merged_only: bool = True  # the shards' hits merged are the answer (no options applied here)


class SearchFanout:
    def __init__(self, cluster: ClusterEngine, max_batch: int) -> None:
        self.cluster = cluster
        self.max_batch = max_batch
        self._waiting: dict[str, list[_Request]] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, entry: Entry, queries: list[SearchInput], deadline: float) -> Answer:
        request = _Request(entry, queries, deadline)
        library_id = entry["id"]
        self._waiting.setdefault(library_id, []).append(request)
        if library_id not in self._busy:
            self._busy.add(library_id)
            asyncio.get_running_loop().call_soon(self._start, library_id)
        return await request.done

    def _start(self, library_id: str) -> None:
        waiting = self._waiting.get(library_id, [])
        if not waiting:
            self._busy.discard(library_id)
            return
        batch, count = [], 0
        while waiting and (not batch or count + len(waiting[0].queries) <= self.max_batch):
            request = waiting.pop(0)
            batch.append(request)
            count += len(request.queries)
        task = asyncio.get_running_loop().create_task(self._serve(batch))
        self._tasks.add(task)
        task.add_done_callback(lambda t: (self._tasks.discard(t), self._start(library_id)))

    async def _serve(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.done.done()]  # a caller that went away is not searched for
        if not live:
            return
        try:
            queries = [q for r in live for q in r.queries]
            results, timings = await self.search(live[0].entry, queries, max(r.deadline for r in live))
        except ArrwdbError as exc:
            if len(live) > 1 and exc.status < 500:  # one request's bad input must not fail the others
                await asyncio.gather(*(self._serve([r]) for r in live))
                return
            for r in live:
                if not r.done.done():
                    r.done.set_exception(exc)
            return
        except BaseException as exc:
            for r in live:
                if not r.done.done():
                    r.done.set_exception(exc)
            raise
        at = 0
        for r in live:
            if not r.done.done():
                r.done.set_result((results[at : at + len(r.queries)], timings))
            at += len(r.queries)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # -- one batch ----------------------------------------------------------------------------------

    async def search(self, entry: Entry, queries: list[SearchInput], deadline: float) -> Answer:
        if entry["shards"] == 1:
            answers, timings = await self._ask_shards(entry, queries, deadline)
            return [HitsJSON(data) for data in answers[0]], timings
        reranked = [q for q in queries if q.rerank is not None]
        for query in reranked:
            check_rerank(query)
        inner = [
            q if q.rerank is None else replace(q, k=max(q.k, q.rerank.candidates), include_text=True, rerank=None)
            for q in queries
        ]
        inner = await self._embedded(entry, inner, deadline)
        plans, sent = _plan(inner)
        answers, timings = await self._ask_shards(entry, sent, deadline)
        per_shard = [[orjson.loads(data) for data in shard] for shard in answers]
        out: list[HitsJSON] = []
        for query, plan in zip(queries, plans, strict=True):
            found = _answer(plan, per_shard)
            if query.rerank is not None:
                candidates = as_hits(found) if plan.merged_only else found  # type: ignore[arg-type]
                ranked, rerank_timings = await self._rerank(query, candidates, deadline)  # type: ignore[arg-type]
                timings = timings + rerank_timings
                out.append(render(ranked))
            elif plan.merged_only:
                out.append(HitsJSON(orjson.dumps(found, option=JSON_OPTIONS)))
            else:
                out.append(render(found))  # type: ignore[arg-type]
        return out, timings

    async def _ask_shards(
        self, entry: Entry, queries: list[SearchInput], deadline: float
    ) -> tuple[list[list[bytes]], Timings]:
        described, frames = wire.queries_out(queries)
        seconds = max(0.0, deadline - time.monotonic())
        tenant = entry["tenant"]
        calls = [
            self.cluster.read(
                entry,
                s,
                lambda link, epoch, s=s: link.ask(
                    "search", tenant, shard_name(entry, s), described, frames, seconds, epoch, deadline=deadline
                ),
            )
            for s in range(entry["shards"])
        ]
        replies = await self.cluster._gather(calls)
        timings = [wire.timings_from(t) for _, t in replies]
        slowest = Timings(
            max(t.queue_ms for t in timings), max(t.compute_ms for t in timings), max(t.batch_size for t in timings)
        )
        return [answers for answers, _ in replies], slowest

    async def _embedded(self, entry: Entry, queries: list[SearchInput], deadline: float) -> list[SearchInput]:
        """The queries with their texts embedded once, for every shard's vector leg."""
        positions = [
            i
            for i, q in enumerate(queries)
            if q.embedding is None and q.query is not None and (q.retrieval is None or q.retrieval.mode != "keyword")
        ]
        if not positions:
            return queries
        texts = [queries[i].query for i in positions]
        seconds = max(0.0, deadline - time.monotonic())
        model = entry["settings"]["model"]
        data, shape, _ = await self.cluster.read(
            entry, 0, lambda link, _epoch: link.ask("embed", texts, model, seconds, deadline=deadline)
        )
        vectors = np.frombuffer(data, dtype=np.float32).reshape(shape)
        dimension = entry["settings"]["dimension"]
        if vectors.shape[1] != dimension:  # as one engine refuses it (arrwdb.library.search_plan)
            raise InvalidInput(
                f"library {entry['name']!r} has dimension {dimension}, not the model's: search it with an embedding"
            )
        out = list(queries)
        for i, vector in zip(positions, vectors, strict=True):
            out[i] = replace(queries[i], embedding=vector)
        return out

    async def _rerank(self, query: SearchInput, hits: list[Hit], deadline: float) -> tuple[list[Hit], Timings]:
        """The engine's rerank (arrwdb.engine.rerank) over the merged candidates."""
        if not hits:
            return [], Timings()
        texts = [hit.text or "" for hit in hits]
        check_rerank(query)  # its text is there
        model = query.rerank.model if query.rerank is not None else None
        scores, _, timings = await self.cluster.rerank(query.query or "", texts, model, deadline)
        return reranked(query, hits, scores), timings


def _plan(queries: list[SearchInput]) -> tuple[list[_Plan], list[SearchInput]]:
    """What to ask every shard (``sent``), and how each query's answer is made from the replies."""
    plans: list[_Plan] = []
    sent: list[SearchInput] = []
    for query in queries:
        options = query.retrieval
        if options is None:
            plans.append(_Plan(query, vector_at=len(sent)))
            sent.append(replace(query, json=True))
            continue
        size = leg_size(options, query.k)
        plan = _Plan(query, merged_only=False)
        if options.mode != "keyword":
            plan.vector_at = len(sent)
            sent.append(replace(query, k=size, retrieval=None, json=True))
        if options.mode != "vector":
            plan.keyword_at = len(sent)
            keywords = options.keywords if options.keywords is not None else query.query
            leg = Retrieval(mode="keyword", keywords=keywords)
            sent.append(replace(query, query=None, embedding=None, k=size, retrieval=leg, json=True))
        plans.append(plan)
    return plans, sent


def _answer(plan: _Plan, per_shard: list[list[Any]]) -> list[dict[str, Any]] | list[Hit]:
    """One query's answer: its legs merged over the shards (a plain search: the merged hits as the
    API's dicts), or fused and finished as one engine does (``Hit`` objects, or groups)."""
    query = plan.query
    options = query.retrieval
    if plan.merged_only or options is None:
        return merge_hits([shard[plan.vector_at] for shard in per_shard], query.k)
    size = leg_size(options, query.k)
    vector = as_hits(merge_hits([s[plan.vector_at] for s in per_shard], size)) if plan.vector_at >= 0 else []
    keyword = as_hits(merge_hits([s[plan.keyword_at] for s in per_shard], size)) if plan.keyword_at >= 0 else []
    if options.mode == "hybrid":
        ranked = fuse(vector, keyword, options)
    else:
        ranked = vector if options.mode == "vector" else keyword
    return finish(ranked, options, query.k)  # type: ignore[return-value]
