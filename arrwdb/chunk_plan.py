"""What a document becomes before it is embedded: its checked vector, or its chunk spans and texts."""

from __future__ import annotations

from dataclasses import replace

from arrwdb.embed.protocol import Embedder
from arrwdb.errors import InvalidInput
from arrwdb.inputs import DocumentInput
from arrwdb.records import LibraryRecord
from arrwdb.validation import check_vector


def checked_embedding(record: LibraryRecord, doc: DocumentInput, position: int) -> DocumentInput:
    """The document with its client vector checked against the library (dimension, finite, non-zero)."""
    if doc.embedding is None:
        return doc
    vector = check_vector(doc.embedding, record.dimension, record.metric, f"documents[{position}].embedding")
    return replace(doc, embedding=vector)


def plan_chunks(
    record: LibraryRecord, doc: DocumentInput, position: int, embedder: Embedder
) -> tuple[list[tuple[int, int]], list[str] | None]:
    """Chunk spans of a document, and the texts to embed (None when the client gave a vector)."""
    where = f"documents[{position}]"
    if doc.embedding is not None:
        return [(0, len(doc.text or ""))], None
    if doc.text is None or not doc.text.strip():
        raise InvalidInput(f"{where} needs a non-empty text or an embedding")
    if record.dimension != embedder.dimension:
        raise InvalidInput(
            f"{where}: library {record.name!r} has dimension {record.dimension}, not the model's "
            f"{embedder.dimension}: give an embedding"
        )
    spans = embedder.chunk_spans(doc.text)
    return spans, [doc.text[start:end] for start, end in spans]
