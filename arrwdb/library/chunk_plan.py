"""What a document becomes before it is embedded: its checked vector, or its chunk spans and texts."""

from __future__ import annotations

import numpy as np

from arrwdb.embed.protocol import Embedder
from arrwdb.embed.tokens import TokenizedText
from arrwdb.errors import InvalidInput
from arrwdb.library.inputs import DocumentInput
from arrwdb.library.validation import check_vector, checked_rows, field_path, subject
from arrwdb.records import LibraryRecord


def checked_embedding(record: LibraryRecord, doc: DocumentInput, position: int) -> np.ndarray | None:
    """The document's client vector checked against the library (dimension, finite, non-zero), as
    float32; None when the document has none (its text is embedded)."""
    if doc.embedding is None:
        return None
    return check_vector(
        doc.embedding, record.dimension, record.metric, field_path(_where(doc, position), doc.vector_field)
    )


def _where(doc: DocumentInput, position: int) -> str:
    """The document's path in its request body (the HTTP layer says; other callers by position)."""
    return doc.where if doc.where is not None else f"documents[{position}]"


def checked_embeddings(record: LibraryRecord, docs: list[DocumentInput]) -> list[np.ndarray | None]:
    """``checked_embedding`` for a batch: the client vectors are checked together, as one matrix (a
    thousand-document import spent a fifth of its event-loop time checking vectors one by one), and
    come back as the matrix's rows.  A batch with a bad vector is checked one by one instead, for the
    error that names it."""
    given = [i for i, doc in enumerate(docs) if doc.embedding is not None]
    out: list[np.ndarray | None] = [None] * len(docs)
    if not given:
        return out
    vectors = [docs[i].embedding for i in given]
    if all(v.ndim == 1 and v.shape[0] == record.dimension for v in vectors):  # type: ignore[union-attr]
        matrix = checked_rows(np.stack(vectors), record.metric)  # type: ignore[arg-type]
        if matrix is not None:
            for i, row in zip(given, matrix, strict=True):
                out[i] = row
            return out
    return [checked_embedding(record, doc, i) for i, doc in enumerate(docs)]


def plan_chunks(
    record: LibraryRecord, doc: DocumentInput, position: int, embedder: Embedder
) -> tuple[list[tuple[int, int]], list[str] | None]:
    """Chunk spans of a document, and the texts to embed (None when the client gave a vector)."""
    where = subject(_where(doc, position), "the document")
    if doc.embedding is not None:
        return [(0, len(doc.text or ""))], None
    if doc.text is None or not doc.text.strip():
        raise InvalidInput(f"{where} needs a non-empty text or an embedding")
    if record.dimension != embedder.dimension:
        raise InvalidInput(
            f"{where}: library {record.name!r} has dimension {record.dimension}, not the model's "
            f"{embedder.dimension}: give an embedding"
        )
    if doc.chunks is not None and doc.chunks.tokenizer == embedder.tokenizer_id:  # an HTTP worker's
        return doc.chunks.spans, doc.chunks.texts(doc.text)
    spans, ids = embedder.cut(doc.text)
    if ids is not None:  # one chunk, its ids from the cutting pass: the embedder does not tokenize it again
        ((start, end),) = spans
        return spans, [TokenizedText(doc.text[start:end], ids, embedder.tokenizer_id)]
    return spans, [doc.text[start:end] for start, end in spans]
