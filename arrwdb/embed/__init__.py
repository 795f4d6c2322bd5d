"""Text embedding: the Embedder protocol, chunking, the embedding cache and the embedders.

Importing this package does not import torch or transformers: the model embedder is reached through
``load_embedder`` (or by importing ``arrwdb.embed.minilm`` explicitly), so the fake embedder and the
cache stay cheap to use in tests and tools.
"""

from arrwdb.embed.cache import EmbeddingCache
from arrwdb.embed.chunking import DEFAULT_OVERLAP, chunk_texts, spans_from_offsets, token_windows
from arrwdb.embed.fake import HashEmbedder
from arrwdb.embed.loader import load_embedder
from arrwdb.embed.protocol import Embedder, PreparedBatch

__all__ = [
    "DEFAULT_OVERLAP",
    "Embedder",
    "EmbeddingCache",
    "HashEmbedder",
    "PreparedBatch",
    "chunk_texts",
    "load_embedder",
    "spans_from_offsets",
    "token_windows",
]
