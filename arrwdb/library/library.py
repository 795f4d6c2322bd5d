"""The in-memory side of one library: its index, what filters need (metadata, rows per document) and
what hits are made of (each row's document, chunk index, title and metadata), so that a search that
returns no text reads nothing from SQLite.

Mutated only on the device worker, so searches and index updates never overlap.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from arrwdb.index.ann import AnnIndex
from arrwdb.index.base import Index
from arrwdb.index.flat import FlatIndex
from arrwdb.library.filters import Filter
from arrwdb.library.hits_json import kept_bytes
from arrwdb.library.inputs import Hit
from arrwdb.records import AppliedWrite, LibraryRecord, Metadata

_FILTER_CACHE_ENTRIES = 64
# Resident bytes per row of the row -> RowEntry map, for statistics: 122 measured (tracemalloc, a million
# one-chunk documents: the dict slot and the 4-tuple) plus the int key; the strings and metadata are the
# document's, shared.
_ROW_ENTRY_BYTES = 150
# ... and per entry of the set of documents with a text (a slot and a hash; the id is shared).
_SET_ENTRY_BYTES = 40


@dataclass(slots=True)
class RowEntry:
    """What a hit on one row (one chunk of a document) is made of.  Immutable: a write replaces a
    document's entries, so a batch's snapshot of them stays as it was when the batch searched.  Only
    its hit's JSON is set later, once, the first time the row is a hit (arrwdb.library.hits_json)."""

    doc_id: str
    chunk_index: int
    title: str | None
    metadata: Metadata
    json_head: bytes | None = field(default=None, compare=False, repr=False)
    json_tail: bytes | None = field(default=None, compare=False, repr=False)


class DocumentTables(NamedTuple):
    """A library's documents as read from the store after a restart."""

    doc_meta: dict[str, Metadata]
    doc_rows: dict[str, tuple[int, ...]]  # row ids in chunk order
    row_entries: dict[int, RowEntry]  # built by the reading thread, not the worker: ~1-1.5 s a million
    docs_with_text: set[str]  # documents that store a text


def row_entries_of(
    doc_meta: dict[str, Metadata], doc_rows: dict[str, tuple[int, ...]], titles: dict[str, str]
) -> dict[int, RowEntry]:
    """Every row's entry, from a library's documents (rows in chunk order; titles of those that have one)."""
    return {
        row: RowEntry(doc_id, chunk_index, titles.get(doc_id), doc_meta[doc_id])
        for doc_id, rows in doc_rows.items()
        for chunk_index, row in enumerate(rows)
    }


class HitFields(NamedTuple):
    """The entries of a batch's hit rows, one per row id; None for an empty slot (-1) or a row that
    is no longer live (``LibraryState.hit_fields``)."""

    entries: list[RowEntry | None]

    def hits(self, scores: list[float], at: int) -> list[Hit]:
        """One query's hits (text None) from its scores and the entries from position ``at`` on; rows
        no longer live, and empty slots, are left out."""
        return [
            Hit(entry.doc_id, entry.chunk_index, score, entry.title, None, entry.metadata)
            for entry, score in zip(self.entries[at : at + len(scores)], scores, strict=True)
            if entry is not None
        ]

    def docs(self) -> set[str]:
        return {entry.doc_id for entry in self.entries if entry is not None}


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def build_index(record: LibraryRecord, device: torch.device) -> Index:
    # Every index type is served exactly until its ANN index exists (API.md).  Without FAISS
    # installed, ivf and hnsw libraries stay exact (their statistics say so).
    if record.index_type in ("ivf", "hnsw") and faiss_available():
        return AnnIndex(record, device)
    return FlatIndex(record.dimension, record.metric, device)


# A library keeps its vectors in a snapshot beside the store once it holds this many rows: a restart
# then reads one file, not every row from SQLite (1M x 384: /ready after 16.5-19.3 s from SQLite here,
# 4.2-5.5 s from the snapshot).  It is written again once the rows not in it reach half of those in it,
# so a library growing to N rows writes about 2N rows of snapshots in all; an ANN build writes one too.
VECTOR_SNAPSHOT_MIN_ROWS = 50_000


class LibraryState:
    def __init__(self, record: LibraryRecord, device: torch.device) -> None:
        self.record = record
        self.index = build_index(record, device)
        self.doc_rows: dict[str, tuple[int, ...]] = {}  # row ids in chunk order (rows are numbered in it)
        self.doc_meta: dict[str, Metadata] = {}
        self.docs_with_text: set[str] = set()
        self.row_entries: dict[int, RowEntry] = {}
        # Bytes of hit JSON kept on row entries (arrwdb.library.hits_json): added by the finishing thread
        # and the event loop, released by the worker's writes; one counter per thread, so that no update
        # is lost.  (A row deleted between a batch's search and its finishing is counted when rendered
        # and never released, and a row both threads render at once is counted twice: a few hundred
        # bytes too many in the statistics, once in a long while.)
        self.hit_json_added = 0
        self.hit_json_added_on_loop = 0  # ... by the event loop, for keyword and hybrid answers
        self.hit_json_released = 0
        self.version = 0  # bumped by every applied write: keys the filter cache
        self._allowed_cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        # While the documents' metadata loads in the background after a restart: the writes applied
        # meanwhile, and where the document count comes from until then.
        self._writes_while_loading: list[AppliedWrite] | None = None
        self._count_documents: Callable[[], int] | None = None
        self.snapshot_rows = 0  # rows in the vector snapshot, as loaded at start or last written
        self._unsaved_rows = 0  # rows added since (an upsert adds its rows again: they are not in it)
        self._request_vector_snapshot: Callable[[], None] | None = None
        self._vector_snapshot_requested = False

    @property
    def document_count(self) -> int:
        if self._count_documents is not None:
            return self._count_documents()
        return len(self.doc_meta)

    @property
    def documents_loaded(self) -> bool:
        """False while the filter state (metadata and rows per document) is still loading: filtered
        searches must wait for it; everything else is served meanwhile."""
        return self._writes_while_loading is None

    def begin_document_load(self, count_documents: Callable[[], int]) -> None:
        """Start-up, on the worker, before the background read of the documents begins."""
        self._writes_while_loading = []
        self._count_documents = count_documents

    def finish_document_load(self, tables: DocumentTables) -> None:
        """On the worker: install what the background read found, then replay the writes applied since
        it began.  Each write sets or removes a whole document, so replaying one the read already saw
        changes nothing, and replaying them in commit order leaves the state the store holds."""
        pending = self._writes_while_loading or []
        self.doc_meta, self.doc_rows, self.row_entries, self.docs_with_text = tables
        for write in pending:
            self._apply_document(write)
        self._writes_while_loading = None
        self._count_documents = None
        self.version += 1

    def load(self, row_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Rows read from the store at start-up: not an import (a graph built over them is built at the
        library's own efConstruction, not as a light import graph)."""
        if isinstance(self.index, AnnIndex):
            self.index.add(row_ids, vectors, imported=False)
        else:
            self.index.add(row_ids, vectors)

    def apply(self, writes: Sequence[AppliedWrite]) -> None:
        """Mirror committed writes of this library, in commit order, with one index add and one remove
        for all of them, so that a group commit of single-document inserts pays the index's per-call
        cost once, not once per document.  Adding every new row first and then removing every replaced or
        deleted one leaves what applying them one by one would: row ids only grow and are never
        reused, so a row removed by a later write of the group is already there to be removed."""
        added = [(w.added_rows, w.added_vectors) for w in writes if w.metadata is not None and w.added_rows]
        vectors = [block for _, block in added if block is not None]
        if vectors:
            rows = np.fromiter((row for ids, block in added if block is not None for row in ids), dtype=np.int64)
            self.index.add(rows, np.concatenate(vectors))
            self._unsaved_rows += len(rows)
        removed = [row for w in writes for row in w.removed_rows]
        if removed:
            self.index.remove(np.asarray(removed, dtype=np.int64))
        for write in writes:
            self._apply_document(write)
        if self._writes_while_loading is not None:
            self._writes_while_loading.extend(writes)
        self.version += 1
        self._maybe_request_vector_snapshot()

    def _apply_document(self, write: AppliedWrite) -> None:
        doc_id = write.doc_id
        for row in write.removed_rows:
            entry = self.row_entries.pop(row, None)
            if entry is not None:
                self.hit_json_released += kept_bytes(entry)
        if write.metadata is None:
            self.doc_meta.pop(doc_id, None)
            self.doc_rows.pop(doc_id, None)
            self.docs_with_text.discard(doc_id)
            return
        self.doc_meta[doc_id] = write.metadata
        self.doc_rows[doc_id] = write.added_rows
        for chunk_index, row in enumerate(write.added_rows):  # a document's rows are in chunk order
            replaced = self.row_entries.get(row)  # a patch keeps the rows and replaces their entries
            if replaced is not None:
                self.hit_json_released += kept_bytes(replaced)
            self.row_entries[row] = RowEntry(doc_id, chunk_index, write.title, write.metadata)
        if write.has_text:
            self.docs_with_text.add(doc_id)
        else:
            self.docs_with_text.discard(doc_id)

    # -- the vector snapshot (written by the builder thread) ----------------------------------------

    def set_vector_snapshot_requester(self, request: Callable[[], None]) -> None:
        """Once loaded (on the worker) or created: a library whose rows came from SQLite asks now."""
        self._request_vector_snapshot = request
        self._unsaved_rows = len(self.index) - self.snapshot_rows
        self._maybe_request_vector_snapshot()

    def vector_snapshot_saved(self, rows: int) -> None:
        """``rows`` were copied into the snapshot just written; rows added after the copy are not in it."""
        self.snapshot_rows, self._vector_snapshot_requested = rows, False
        self._unsaved_rows = max(0, len(self.index) - rows)

    def vector_snapshot_due(self) -> bool:
        return self._unsaved_rows >= max(VECTOR_SNAPSHOT_MIN_ROWS, self.snapshot_rows // 2)

    def _maybe_request_vector_snapshot(self) -> None:
        if self._request_vector_snapshot is None or self._vector_snapshot_requested or not self.vector_snapshot_due():
            return
        self._vector_snapshot_requested = True
        self._request_vector_snapshot()

    def any_text(self, fields: HitFields) -> bool:
        """Whether one of the documents of a batch's hits stores a text: only then do the hits need
        SQLite."""
        return bool(self.docs_with_text) and not self.docs_with_text.isdisjoint(fields.docs())

    def hit_fields(self, row_ids: list[int]) -> HitFields:
        """What the hits of these rows are made of, as the library is now (on the device worker): one
        C-level dict lookup per row, so that the hits are built from the snapshot on another thread
        while the worker goes on.  (Four lookups per hit, row -> document -> rows, title, metadata,
        took 12% of the device thread under 64 clients of 64-query HNSW searches; each is a likely
        cache miss in a large dict.)  Only once ``documents_loaded``: until then the store answers."""
        return HitFields(list(map(self.row_entries.get, row_ids)))

    def allowed_rows(self, filter_: Filter, filter_key: str) -> np.ndarray:
        """Row ids of the documents that match ``filter_``, sorted (cached per library version)."""
        cache_key = (self.version, filter_key)
        cached = self._allowed_cache.get(cache_key)
        if cached is not None:
            self._allowed_cache.move_to_end(cache_key)
            return cached
        matches = filter_.matches
        rows = [row for doc_id, meta in self.doc_meta.items() if matches(meta) for row in self.doc_rows[doc_id]]
        allowed = np.asarray(sorted(rows), dtype=np.int64)
        self._allowed_cache[cache_key] = allowed
        while len(self._allowed_cache) > _FILTER_CACHE_ENTRIES:
            self._allowed_cache.popitem(last=False)
        return allowed

    def search(
        self,
        queries: np.ndarray,
        k: int,
        filter_: Filter | None,
        filter_key: str,
        params: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = None if filter_ is None else self.allowed_rows(filter_, filter_key)
        if allowed is not None and len(allowed) == 0:
            empty = np.full((len(queries), k), -1, dtype=np.int64)
            return np.full((len(queries), k), -np.inf, dtype=np.float32), empty
        return self.index.search(queries, k, allowed, params)

    def statistics(self) -> dict[str, Any]:
        index_stats = self.index.statistics()
        # One pass (this runs on the event loop): a document's first chunk's entry carries its id,
        # metadata and title.
        metadata_bytes = sum(
            len(e.doc_id) + 64 * (len(e.metadata) + 1) + (64 + len(e.title) if e.title else 0)
            for e in self.row_entries.values()
            if not e.chunk_index
        )
        metadata_bytes += len(self.row_entries) * _ROW_ENTRY_BYTES + len(self.docs_with_text) * _SET_ENTRY_BYTES
        metadata_bytes += self.hit_json_added + self.hit_json_added_on_loop - self.hit_json_released
        return {
            "document_count": self.document_count,
            # False for a moment after a restart, while the documents' metadata loads in the background
            # (filtered searches wait for it; everything else is served meanwhile).
            "documents_loaded": self.documents_loaded,
            "chunk_count": len(self.index),
            "vector_count": len(self.index),
            "dimension": self.record.dimension,
            "index_type": self.record.index_type,
            "metric": self.record.metric,
            "index": {**index_stats, "vector_snapshot_rows": self.snapshot_rows},  # read at start, or last written
            "memory_bytes": int(index_stats.get("memory_bytes", 0)) + metadata_bytes,
        }
