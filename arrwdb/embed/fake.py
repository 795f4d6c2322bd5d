"""A deterministic embedder without a model, for the unit tests of everything around embedding.

Each whitespace-separated word maps to a gaussian vector seeded by a stable hash of the word
(hashlib, so it is the same in every process, unlike ``hash()`` under hash randomisation); a text is
the normalised sum of its words' vectors.  Texts that share words are therefore closer than texts
that do not, which is enough for search tests to mean something.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from arrwdb.embed.chunking import DEFAULT_OVERLAP, check_window, spans_from_offsets
from arrwdb.embed.protocol import Embedder

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class WordBatch:
    """The fake embedder's prepared batch: each text's words, already truncated to the window."""

    words: list[list[str]]

    def __len__(self) -> int:
        return len(self.words)


class HashEmbedder(Embedder):
    """Hash-of-words embedder; a word plays the part of a token for ``max_tokens`` and chunking."""

    def __init__(
        self,
        dimension: int = 384,
        max_tokens: int = 254,
        chunk_overlap: int = DEFAULT_OVERLAP,
        seed: int = 0,
        name: str = "hash",
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {dimension}")
        check_window(max_tokens, chunk_overlap)
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.vocab_size = 2**31
        self.tokenizer_id = ""  # words, not a tokenizer's ids: it reads every text itself
        self.chunk_overlap = chunk_overlap
        self.seed = seed
        # Per instance, so two embedders with different seeds or dimensions never share vectors.
        self._word_vector = lru_cache(maxsize=65536)(self._make_word_vector)

    def _make_word_vector(self, word: str) -> np.ndarray:
        digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8, key=str(self.seed).encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        vec = rng.standard_normal(self.dimension).astype(np.float32)
        vec.flags.writeable = False
        return vec

    def cut(self, text: str) -> tuple[list[tuple[int, int]], None]:
        return self.chunk_spans(text), None  # words, not token ids

    def chunk_spans(self, text: str) -> list[tuple[int, int]]:
        matches = list(_WORD.finditer(text))
        offsets = [m.span() for m in matches]
        # Each word is its own "word" for boundary purposes, so windows never split one.
        return spans_from_offsets(offsets, range(len(offsets)), len(text), self.max_tokens, self.chunk_overlap)

    def _words(self, item: str | Sequence[int]) -> list[str]:
        # A token id plays the part of the word "#id"; truncated like the model does, so a too-long
        # text embeds as its first window only.
        words = item.split() if isinstance(item, str) else [f"#{token}" for token in item]
        return words[: self.max_tokens]

    def prepare(self, texts: Sequence[str | Sequence[int]]) -> WordBatch:
        return WordBatch([self._words(item) for item in texts])

    def token_counts(self, texts: Sequence[str | Sequence[int]]) -> list[int]:
        return [len(self._words(item)) for item in texts]

    def embed_prepared(self, batch: WordBatch) -> np.ndarray:  # type: ignore[override]
        out = np.empty((len(batch), self.dimension), dtype=np.float32)
        for i, words in enumerate(batch.words):
            # An empty text still needs a unit vector: use the vector of the empty word.
            vec = np.sum([self._word_vector(w) for w in words or [""]], axis=0, dtype=np.float32)
            out[i] = vec / max(float(np.linalg.norm(vec)), 1e-12)
        return out
