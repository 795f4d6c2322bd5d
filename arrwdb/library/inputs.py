"""Validated inputs handed from the HTTP layer (or any other caller) to the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arrwdb.embed.tokens import TokenizedChunks
from arrwdb.library.filters import Filter
from arrwdb.records import Metadata


@dataclass(frozen=True)
class DocumentInput:
    id: str | None
    title: str | None
    text: str | None
    embedding: np.ndarray | None  # float32 [dimension], checked against the library by the engine
    metadata: Metadata = field(default_factory=dict)
    # Where the document sits in the request body, for messages (arrwdb.library.validation.field_path): ""
    # for the body itself, "documents[3]" in a batch; None: named by its position in the batch.
    where: str | None = None
    vector_field: str = "embedding"  # the body field its vector came from ("embedding_base64" too)
    # Its text's chunks as an HTTP worker's tokenizer cut them (used when that is the library's model's
    # tokenizer); None: the engine cuts and tokenizes the text itself.
    chunks: TokenizedChunks | None = None


@dataclass(frozen=True)
class RerankInput:
    """``rerank`` of a query: the top ``candidates`` hits are scored by a cross-encoder before ``k``."""

    candidates: int
    model: str | None = None


MODES = ("vector", "keyword", "hybrid")
FUSIONS = ("rrf", "dbsf")


@dataclass(frozen=True)
class Retrieval:
    """A query's retrieval options beyond a plain vector search (API.md, Additions: Search): the
    legs to run and how to fuse them, and what to do with the ranked hits.  Hashable: it is part of
    the result cache's key.  Checked by ``arrwdb.library.retrieval.check_retrieval``."""

    mode: str = "vector"  # one of MODES
    keywords: str | None = None  # the keyword leg's text; None: the query's
    fusion: str = "rrf"  # one of FUSIONS
    fusion_k: int = 60  # RRF's rank constant
    weights: tuple[float, float] = (1.0, 1.0)  # of the vector leg, the keyword leg
    candidates: int | None = None  # hits each leg contributes; None: arrwdb.library.retrieval.leg_size
    score_threshold: float | None = None
    offset: int = 0
    group_by: str | None = None  # "document_id" or a metadata field
    group_size: int = 1

    def plain(self) -> dict[str, Any]:
        """As plain values (the engine protocol's form)."""
        return {
            "mode": self.mode,
            "keywords": self.keywords,
            "fusion": self.fusion,
            "fusion_k": self.fusion_k,
            "weights": list(self.weights),
            "candidates": self.candidates,
            "score_threshold": self.score_threshold,
            "offset": self.offset,
            "group_by": self.group_by,
            "group_size": self.group_size,
        }

    @classmethod
    def from_plain(cls, fields: dict[str, Any]) -> Retrieval:
        weights = fields["weights"]
        return cls(**{**fields, "weights": (float(weights[0]), float(weights[1]))})


@dataclass
class SearchInput:
    """One query of a search request; read-only by convention, like ``Hit``: a frozen dataclass sets
    each field through object.__setattr__ (1.2 against 0.4 us here), and a batch request builds one per
    query on the event loop."""

    query: str | None
    embedding: np.ndarray | None
    k: int = 10
    filter: Filter | None = None
    filter_key: str = ""  # canonical JSON of the filter: groups equal filters inside a batch
    include_text: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    # Answer with the hits as the API's JSON (arrwdb.library.hits_json.HitsJSON) instead of Hit objects: the
    # HTTP layer, which only writes them out.
    json: bool = False
    # Answer with the hits as the library's row entries and scores (arrwdb.library.row_hits.RowHits) where
    # the library's memory holds every field wanted: the legs of a keyword or hybrid search.
    rows: bool = False
    # Where the query sits in the request body, for messages: "" for the body itself, "queries[3]" in
    # a batch; None: named by its position.  vector_field: the body field its vector came from.
    where: str | None = None
    vector_field: str = "embedding"
    rerank: RerankInput | None = None
    # Keyword or hybrid search, thresholds, pagination, groups; None: a plain vector search.
    retrieval: Retrieval | None = None


@dataclass
class Hit:
    """One search hit; read-only by convention (the result cache shares them between answers).  Not a
    frozen dataclass: those set each field through object.__setattr__, 4x the cost of building a plain
    one (0.70 against 0.17 us), and a search batch of 256 queries builds 2,560 of them with the GIL
    held (on the finishing thread: arrwdb.engine.search_batch.Answers)."""

    document_id: str
    chunk_index: int
    score: float
    title: str | None
    text: str | None
    metadata: Metadata
