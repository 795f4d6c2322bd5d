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
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arrwdb.engine.hybrid_job import HybridItem, Leg, fused_hits, run_hybrid
from arrwdb.engine.search_batch import SearchItem
from arrwdb.errors import InvalidInput, NotFound
from arrwdb.library.filters import Filter
from arrwdb.library.hits_json import HitsJSON
from arrwdb.library.inputs import Hit, Retrieval, SearchInput
from arrwdb.library.keyword_rank import rank_many
from arrwdb.library.retrieval import finish, finish_rows, leg_size, render
from arrwdb.library.row_hits import RowHits, rows_json
from arrwdb.library.search_plan import stacked
from arrwdb.library.validation import field_path
from arrwdb.runtime.scheduler import PRIORITY_INTERACTIVE, QueueSpec
from arrwdb.runtime.timings import Timings
from arrwdb.store.keyword_scores import Summable
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
        legs = {mode: [i for i, o in enumerate(options) if o.mode == mode] for mode in ("vector", "keyword", "hybrid")}
        work = []
        if legs["vector"]:
            work.append(
                self.engine.search_vectors(state, [_vector_leg(queries[i], sizes[i]) for i in legs["vector"]], deadline)
            )
        if legs["keyword"]:
            items = [_keyword_leg(state, queries[i], sizes[i]) for i in legs["keyword"]]
            work.append(self._keyword(state, items, deadline))
        if legs["hybrid"]:
            work.append(
                self._hybrid(state, [queries[i] for i in legs["hybrid"]], [sizes[i] for i in legs["hybrid"]], deadline)
            )
        # One kind of query (the usual request): awaited as it is, without a task per kind.
        done = [await work[0]] if len(work) == 1 else await asyncio.gather(*work)
        ranked: dict[int, Leg] = {}
        timings = Timings()
        for positions, (found, found_timings) in zip([p for p in legs.values() if p], done, strict=True):
            ranked.update(zip(positions, found, strict=True))
            timings = timings + found_timings
        answers: list[Answer] = []
        for i, (query, option) in enumerate(zip(queries, options, strict=True)):
            hits = ranked[i]
            if isinstance(hits, RowHits):
                if option.group_by is None:
                    answers.append(self._page(state, finish_rows(hits, option, query.k), query.json))
                    continue
                hits = hits.hits()
            answer = finish(hits, option, query.k)
            answers.append(render(answer) if query.json else answer)
        return answers, timings

    async def _hybrid(
        self, state: LibraryState, queries: list[SearchInput], sizes: list[int], deadline: float
    ) -> tuple[list[Leg], Timings]:
        """Fused hits of hybrid queries: both legs of each in one job (arrwdb.engine.hybrid_job)."""
        engine, record = self.engine, state.record
        legs = [_vector_leg(query, size) for query, size in zip(queries, sizes, strict=True)]
        vectors = engine.given_vectors(record, legs)
        timings = await engine.embed_queries(record, legs, vectors, list(range(len(legs))), deadline)
        items = [
            HybridItem(SearchItem(record.id, stacked([vector]), leg), _keyword_leg(state, query, size), query.retrieval)  # type: ignore[arg-type]
            for vector, leg, query, size in zip(vectors, legs, queries, sizes, strict=True)
        ]
        done = await engine.scheduler.submit_many(
            self.hybrid_spec(record.id), items, deadline=deadline, costs=[1] * len(items)
        )
        return [completed.value for completed in done], timings + Timings.of(list(done))

    def hybrid_spec(self, library_id: str) -> QueueSpec:
        return QueueSpec(
            key=("hybrid", library_id),
            kind="hybrid",
            priority=PRIORITY_INTERACTIVE,
            run=functools.partial(run_hybrid, run_vector=self.engine.run_search, run_keyword=self._run_keyword),
            max_cost=self.engine.scheduler.max_batch_size,
            size_is_cost=True,
            finish=fused_hits,
        )

    @staticmethod
    def _page(state: LibraryState, page: RowHits, as_json: bool) -> Answer:
        if not as_json:
            return page.hits()
        rendered, added = rows_json(page.entries, page.scores)
        state.hit_json_added_on_loop += added  # only the event loop adds to it
        return rendered

    async def _keyword(
        self, state: LibraryState, items: list[KeywordItem], deadline: float
    ) -> tuple[list[Leg], Timings]:
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

    def _run_keyword(self, items: list[KeywordItem]) -> list[Leg | Exception]:
        """One batch of keyword searches, on the device worker (a queue per library: one library's)."""
        results: list[Leg | Exception | None] = [None] * len(items)
        libraries: dict[str, list[int]] = {}
        for n, item in enumerate(items):
            libraries.setdefault(item.library_id, []).append(n)
        for members in libraries.values():
            for n, found in zip(members, self._run_library_keyword([items[n] for n in members]), strict=True):
                results[n] = found
        return results  # type: ignore[return-value]

    def _run_library_keyword(self, items: list[KeywordItem]) -> list[Leg | Exception]:
        """Keyword searches of one library: their words' scores read in one store transaction and added
        up in one kernel call (arrwdb.library.keyword_rank); each item's hits as the library's rows where
        its memory holds every field wanted, else with their fields from one store query."""
        engine = self.engine
        state = engine.libraries.get(items[0].library_id)
        if state is None:
            return [NotFound(f"library {items[0].library_id!r} not found") for _ in items]
        found: list[list[tuple[int, float]] | Exception] = []
        searches, positions = [], []
        for item in items:
            try:
                allowed = None if item.filter is None else state.allowed_rows(item.filter, item.filter_key)
            except Exception as exc:  # fails this item alone (the scheduler's contract)
                found.append(exc)
                continue
            positions.append(len(found))
            found.append([])
            searches.append((item.words, item.limit, allowed))
        try:
            read = engine.store.keyword_read_many(state.record.id, searches)
        except Exception as exc:  # the store failed the whole read: every item that reached it
            for position in positions:
                found[position] = exc
            return found  # type: ignore[return-value]
        summable = [n for n, one in enumerate(read) if isinstance(one, Summable)]
        for n, ranked in zip(summable, rank_many([read[n] for n in summable]), strict=True):  # type: ignore[misc]
            read[n] = ranked
        for position, ranked in zip(positions, read, strict=True):
            found[position] = ranked  # type: ignore[assignment]
        return self._keyword_hits(state, items, found)

    def _keyword_hits(
        self, state: LibraryState, items: list[KeywordItem], found: list[list[tuple[int, float]] | Exception]
    ) -> list[Leg | Exception]:
        results: list[Leg | Exception | None] = [None] * len(items)
        from_store = []
        for n, (item, ranked) in enumerate(zip(items, found, strict=True)):
            if isinstance(ranked, Exception):
                results[n] = ranked
                continue
            if state.documents_loaded and not item.include_text:
                rows = [row for row, _ in ranked]
                entries = list(map(state.row_entries.get, rows))
                if None not in entries:  # else a row committed but not yet applied here: from the store
                    results[n] = RowHits(rows, entries, [score for _, score in ranked], state.version)  # type: ignore[arg-type]
                    continue
            from_store.append(n)
        if from_store:
            row_ids = sorted({row for n in from_store for row, _ in found[n]})  # type: ignore[union-attr]
            fields = self.engine.store.hit_rows(row_ids, any(items[n].include_text for n in from_store))
            for n in from_store:
                hits = []
                for row_id, score in found[n]:  # type: ignore[union-attr]
                    row = fields.get(row_id)
                    if row is not None:  # None: deleted between the match and the fetch
                        text = row.text if items[n].include_text else None
                        hits.append(Hit(row.doc_id, row.chunk_index, score, row.title, text, row.metadata))
                results[n] = hits
        return results  # type: ignore[return-value]

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
        rows=True,
        where=query.where,
        vector_field=query.vector_field,
    )


def _keyword_leg(state: LibraryState, query: SearchInput, size: int) -> KeywordItem:
    options: Retrieval = query.retrieval  # type: ignore[assignment]
    text = options.keywords if options.keywords is not None else (query.query or "")
    return KeywordItem(state.record.id, query_words(text), size, query.filter, query.filter_key, query.include_text)
