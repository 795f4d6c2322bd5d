"""The interface every embedding model of arrwdb implements.

Embedding is split in two steps so that the device worker never waits on the tokenizer: a scheduler
calls ``prepare`` (pure CPU work) for the next batch on another thread while ``embed_prepared`` runs
the current batch on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

import numpy as np

Item = str | Sequence[int]  # a text, or token ids (OpenAI's token-array input)


@runtime_checkable
class PreparedBatch(Protocol):
    """Opaque result of ``Embedder.prepare``: only the embedder that made it may read it.

    Its length is the number of texts it holds, so a scheduler can account for it without knowing
    what is inside.
    """

    def __len__(self) -> int: ...


@runtime_checkable
class Embedder(Protocol):
    """A text embedding model.

    ``max_tokens`` is the number of content tokens one chunk may hold (the model window less its
    special tokens); ``chunk_spans`` cuts longer texts into windows of at most that many tokens.
    """

    name: str
    dimension: int
    max_tokens: int
    vocab_size: int  # token ids an input may hold: 0 <= id < vocab_size
    # The fingerprint of its text tokenizer (arrwdb.embed.tokens.TextTokenizer), "" when it has none:
    # a TokenizedText of this fingerprint brings the ids this embedder would make.
    tokenizer_id: str

    def chunk_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans ``(start, end)`` of overlapping windows that cover ``text`` in order.

        A text that fits the window is the single span ``(0, len(text))``.  Chunk text is always
        ``text[start:end]`` of the original text, never a decoded token sequence.
        """
        ...

    def cut(self, text: str) -> tuple[list[tuple[int, int]], list[int] | None]:
        """``chunk_spans``, and the ids of the one chunk when the text fits one window and the model's
        tokenizer gave them in the same pass (``arrwdb.embed.tokens``); None otherwise: longer texts'
        chunks are tokenized with their batch, on the prepare thread, not where they are cut."""
        ...

    def prepare(self, texts: Sequence[Item]) -> PreparedBatch:
        """CPU-side work for a batch (tokenisation, padding); safe to run on another thread.  An item
        is a text, or token ids of the model's own vocabulary (already tokenised by the client)."""
        ...

    def token_counts(self, texts: Sequence[Item]) -> list[int]:
        """Tokens the model reads for each item, special tokens included, after truncation."""
        ...

    def embed_prepared(self, batch: PreparedBatch) -> np.ndarray:
        """Float32 array ``[len(batch), dimension]``, in input order: L2-normalised rows when the model
        normalises (the packaged MiniLM does; a directory without a Normalize module does not)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Convenience: ``embed_prepared(prepare(texts))``."""
        return self.embed_prepared(self.prepare(texts))


@runtime_checkable
class LaneEmbedder(Protocol):
    """An embedder whose CPU forward passes run in lanes on threads of its own: on the device worker it
    may start a batch there and return before it is done (``MiniLMEmbedder.start_in_lanes``)."""

    def start_in_lanes(self, batch: PreparedBatch) -> Future[np.ndarray] | None:
        """The future of ``embed_prepared(batch)``'s vectors, computed in lanes; None when this batch
        is not embedded in lanes (then ``embed_prepared`` computes it)."""
        ...
