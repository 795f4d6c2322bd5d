"""The engine's side of keyword and hybrid search, thresholds, offsets and groups.

A query with retrieval options (``SearchInput.retrieval``) runs up to two legs at once: the vector
leg is the engine's ordinary vector search for ``leg_size`` hits (batched, cached, on every index
type), the keyword leg a BM25 search of the library's FTS5 table.  Keyword searches are batched like
vector searches: a queue per library on the scheduler, each batch run on the device worker, where the
library's filter state lives and is never caught halfway through a write.  The fused (or single) list
then gets the threshold, offset and groups (``arrwdb.library.retrieval``), and the answer is cached under a
key that holds every option.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrwdb.errors import InvalidInput, NotFound
from arrwdb.library.filters import Filter
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import Hit, Retrieval, SearchInput
from arrwdb.library.retrieval import finish, fuse, leg_size, render
from arrwdb.library.validation import field_path
from arrwdb.runtime.scheduler import PRIORITY_INTERACTIVE, QueueSpec
from arrwdb.runtime.timings import Timings
from arrwdb.store.keywords import query_words

if TYPE_CHECKING:
    from arrwdb.engine.core import Engine
    from arrwdb.library.library import LibraryState

Answer = list[Hit] | list[dict[str, Any]] | HitsJSON
_FIELD_CACHE_ENTRIES = 256


@dataclass(frozen=True, eq=False)
class KeywordItem:
    library_id: str
    words: tuple[str, ...]  # arrwdb.store.keywords.query_words: a chunk matches any; none: no hit
    limit: int
    filter: Filter | None
    filter_key: str
    include_text: bool


class RetrievalSearch:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._fields_seen: dict[tuple[str, int, str], bool] = {}

    async def search(
        self, state: LibraryState, queries: list[SearchInput], deadline: float
    ) -> tuple[list[Answer], Timings]:
        """Answers of a request with at least one query that has retrieval options; the others are
        plain vector searches."""
        engine = self.engine
        answers: list[Answer | None] = [None] * len(queries)
        timings = Timings()
        plain = [i for i, query in enumerate(queries) if query.retrieval is None]
        if plain:
            found, timings = await engine.search_vectors(state, [queries[i] for i in plain], deadline)
            for position, hits in zip(plain, found, strict=True):
                answers[position] = hits
        chosen = [i for i, query in enumerate(queries) if query.retrieval is not None]
        if not state.documents_loaded and any(queries[i].filter or queries[i].retrieval.group_by for i in chosen):  # type: ignore[union-attr]
            await engine.documents.wait(state.record.id, deadline)  # right after a restart
        for i in chosen:
            await self._check_group_field(state, queries[i])
        keys, cached = engine.result_cache.lookup(state, [queries[i] for i in chosen])
        if engine.result_cache.enabled:
            found = sum(hits is not None for hits in cached)
            engine.telemetry.result_cache_hits.inc(found)
            engine.telemetry.result_cache_misses.inc(len(chosen) - found)
        pending = [(i, key) for i, key, hits in zip(chosen, keys, cached, strict=True) if hits is None]
        for i, hits in zip(chosen, cached, strict=True):
            if hits is not None:
                answers[i] = hits
        if pending:
            computed, leg_timings = await self._compute(state, [queries[i] for i, _ in pending], deadline)
            timings = timings + leg_timings
            for (i, key), answer in zip(pending, computed, strict=True):
                answers[i] = answer
                if key is not None and isinstance(answer, HitsJSON):
                    engine.result_cache.put(key, answer)
        return [answer if answer is not None else [] for answer in answers], timings

    async def _compute(
        self, state: LibraryState, queries: list[SearchInput], deadline: float
    ) -> tuple[list[Answer], Timings]:
        options: list[Retrieval] = [query.retrieval for query in queries if query.retrieval is not None]
        sizes = [leg_size(o, q.k) for o, q in zip(options, queries, strict=True)]
        vector_at = [i for i, o in enumerate(options) if o.mode != "keyword"]
        keyword_at = [i for i, o in enumerate(options) if o.mode != "vector"]
        vector_inputs = [_vector_leg(queries[i], sizes[i]) for i in vector_at]
        keyword_items = [_keyword_leg(state, queries[i], sizes[i]) for i in keyword_at]
        vector_work = self.engine.search_vectors(state, vector_inputs, deadline) if vector_inputs else _nothing()
        keyword_work = self._keyword(state, keyword_items, deadline) if keyword_items else _nothing()
        (vector_found, vector_timings), (keyword_found, keyword_timings) = await asyncio.gather(
            vector_work, keyword_work
        )
        vector_hits: dict[int, list[Hit]] = dict(zip(vector_at, vector_found, strict=True))  # type: ignore[arg-type]
        keyword_hits: dict[int, list[Hit]] = dict(zip(keyword_at, keyword_found, strict=True))
        answers: list[Answer] = []
        for i, (query, option) in enumerate(zip(queries, options, strict=True)):
            if option.mode == "hybrid":
                ranked = fuse(vector_hits[i], keyword_hits[i], option)
            else:
                ranked = vector_hits[i] if option.mode == "vector" else keyword_hits[i]
            answer = finish(ranked, option, query.k)
            answers.append(render(answer) if query.json else answer)
        return answers, vector_timings + keyword_timings

    async def _keyword(
        self, state: LibraryState, items: list[KeywordItem], deadline: float
    ) -> tuple[list[list[Hit]], Timings]:
        done = await self.engine.scheduler.submit_many(
            self.spec(state.record.id), items, deadline=deadline, costs=[1] * len(items)
        )
        return [completed.value for completed in done], Timings.of(list(done))

    def spec(self, library_id: str) -> QueueSpec:
        return QueueSpec(
            key=("keyword", library_id),
            kind="keyword",
            priority=PRIORITY_INTERACTIVE,
            run=self._run_keyword,
            max_cost=self.engine.scheduler.max_batch_size,
        )

    def _run_keyword(self, items: list[KeywordItem]) -> list[list[Hit] | Exception]:
        """One batch of keyword searches, on the device worker: each item's ranked rows, then the hits'
        fields with one store query for the batch."""
        engine = self.engine
        ranked: list[list[tuple[int, float]] | Exception] = []
        for item in items:
            state = engine.libraries.get(item.library_id)
            if state is None:
                ranked.append(NotFound(f"library {item.library_id!r} not found"))
                continue
            allowed = None if item.filter is None else state.allowed_rows(item.filter, item.filter_key)
            try:
                ranked.append(engine.store.keyword_search(item.library_id, item.words, item.limit, allowed))
            except Exception as exc:  # fails this item alone (the scheduler's contract)
                ranked.append(exc)
        row_ids = sorted({row for rows in ranked if not isinstance(rows, Exception) for row, _ in rows})
        fields = engine.store.hit_rows(row_ids, any(item.include_text for item in items))
        results: list[list[Hit] | Exception] = []
        for item, rows in zip(items, ranked, strict=True):
            if isinstance(rows, Exception):
                results.append(rows)
                continue
            hits = []
            for row_id, score in rows:
                row = fields.get(row_id)
                if row is not None:  # None: deleted between the match and the fetch
                    text = row.text if item.include_text else None
                    hits.append(Hit(row.doc_id, row.chunk_index, score, row.title, text, row.metadata))
            results.append(hits)
        return results

    async def _check_group_field(self, state: LibraryState, query: SearchInput) -> None:
        """``group_by`` on a metadata field that no document of the library has is a 4xx: it would
        always answer no groups, which is far more likely a typo than a wish."""
        field = query.retrieval.group_by  # type: ignore[union-attr]
        if field is None or field == "document_id":
            return
        key = (state.record.id, state.version, field)
        seen = self._fields_seen.get(key)
        if seen is None:
            # On the device worker: the documents' metadata changes there, and a dict must not change
            # while it is iterated.
            seen = bool(
                await self.engine.on_worker(lambda: any(field in metadata for metadata in state.doc_meta.values()))
            )
            if len(self._fields_seen) >= _FIELD_CACHE_ENTRIES:
                self._fields_seen.clear()
            self._fields_seen[key] = seen
        if not seen:
            where = query.where if query.where is not None else ""
            raise InvalidInput(
                f"{field_path(where, 'group_by')}: no document of library {state.record.name!r} "
                f'has the metadata field {field!r} (or use "document_id")'
            )


def _vector_leg(query: SearchInput, size: int) -> SearchInput:
    """The query's vector search for ``size`` hits, as Hit objects (fused or cut before rendering)."""
    return SearchInput(
        query=query.query,
        embedding=query.embedding,
        k=size,
        filter=query.filter,
        filter_key=query.filter_key,
        include_text=query.include_text,
        params=query.params,
        json=False,
        where=query.where,
        vector_field=query.vector_field,
    )


def _keyword_leg(state: LibraryState, query: SearchInput, size: int) -> KeywordItem:
    options: Retrieval = query.retrieval  # type: ignore[assignment]
    text = options.keywords if options.keywords is not None else (query.query or "")
    return KeywordItem(state.record.id, query_words(text), size, query.filter, query.filter_key, query.include_text)


async def _nothing() -> tuple[list[Any], Timings]:
    return [], Timings()
