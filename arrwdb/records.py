"""Plain records passed between the store, the engine and the HTTP layer (no web or torch imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

Metadata = dict[str, Any]

INDEX_TYPES = ("brute_force", "ivf", "hnsw")
METRICS = ("cosine", "ip", "l2")
# The most keys a document's metadata may hold (checked on every write, a merge patch included).
MAX_KEYS = 256


@dataclass(frozen=True)
class LibraryRecord:
    id: str
    tenant: str
    name: str
    dimension: int
    index_type: str
    metric: str
    index_params: dict[str, Any]
    created_at: str
    model: str = ""  # the embedding model of its texts; "" (libraries made before models) = the default


@dataclass(frozen=True)
class ChunkRecord:
    """One vector of a document: a span of its text (the whole text for a single-chunk document)."""

    chunk_index: int
    start: int
    end: int
    vector: np.ndarray  # float32 [dimension]


@dataclass(frozen=True)
class DocumentRecord:
    id: str
    title: str | None
    text: str | None
    metadata: Metadata
    embedding: np.ndarray | None  # the client's vector (float32), when one was given
    chunks: tuple[ChunkRecord, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Upsert:
    document: DocumentRecord


@dataclass(frozen=True)
class Delete:
    doc_id: str
    missing_ok: bool = False  # a delete by filter: a document deleted meanwhile is no error, just not counted


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch of a document's title and metadata; its text and vectors stay as they are."""

    doc_id: str
    title_given: bool  # False: the title stays; True: it becomes ``title`` (None removes it)
    title: str | None
    metadata: dict[str, Any]  # keys to set; a None value removes the key


WriteOp = Upsert | Delete | Patch


@dataclass(frozen=True)
class ChangePage:
    """A library's changes after sequence ``after``, for a replica: the current state of each document
    written after ``after`` (``documents``) and the ids of those deleted since (``deleted``).  Every
    change with a sequence up to ``upto`` is covered (a document may be newer than ``upto``: states are
    read as they are now); ``complete``: nothing after ``upto`` was left for a next page."""

    after: int
    upto: int
    documents: tuple[DocumentRecord, ...]
    deleted: tuple[str, ...]
    complete: bool


@dataclass(frozen=True)
class AppliedWrite:
    """What one committed write changed, for the in-memory index to mirror."""

    library_id: str
    doc_id: str
    removed_rows: tuple[int, ...]
    added_rows: tuple[int, ...]
    added_vectors: np.ndarray | None  # float32 [len(added_rows), dimension]
    metadata: Metadata | None  # None for a delete
    seq: int
    title: str | None = None
    has_text: bool = False  # whether the document stores a text (hits of text-less documents skip SQLite)


class HitRow(NamedTuple):
    """The document fields of one vector row.  A named tuple (immutable like the dataclasses here, and
    four times cheaper to build): a search batch makes one per distinct hit."""

    row_id: int
    doc_id: str
    chunk_index: int
    title: str | None
    text: str | None
    metadata: Metadata
