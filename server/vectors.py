"""A client's vector as JSON floats (``embedding``) or as base64 float32 bytes (``embedding_base64``):
one decoder for documents and queries."""

from __future__ import annotations

import binascii

import numpy as np
import pybase64

from arrwdb.errors import InvalidInput
from arrwdb.library.validation import field_path


def vector_field(embedding_base64: str | None) -> str:
    """The body field a client vector came from, so the engine's messages name that field."""
    return "embedding" if embedding_base64 is None else "embedding_base64"


def client_vector(embedding: list[float] | None, embedding_base64: str | None, where: str) -> np.ndarray | None:
    """The vector the client sent, or None when it sent neither; the engine checks it against the
    library (dimension, finiteness).  ``where``: the path of the object holding it ("" for the body)."""
    if embedding_base64 is None:
        return None if embedding is None else np.asarray(embedding, dtype=np.float64)
    field = field_path(where, "embedding_base64")
    if embedding is not None:
        raise InvalidInput(f"{field}: give embedding or embedding_base64, not both")
    try:
        # pybase64's SIMD decoder, validating: 0.5 ms for a 1,000-vector import where the standard
        # library's binascii took 3.5 ms of the event loop.
        raw = pybase64.b64decode(embedding_base64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64") from None
    if not raw or len(raw) % 4:
        raise InvalidInput(f"{field} must hold a whole number of float32 values (4 bytes each)")
    # A read-only view of the decoded bytes: the engine's check copies the vectors into one matrix.
    return np.frombuffer(raw, dtype="<f4")
