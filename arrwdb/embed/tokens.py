"""A model's text tokenizer without the model: what an HTTP worker process needs to hand the engine token
ids instead of texts, and what the model embedder itself tokenizes with, so that both give the same ids.

``TextTokenizer`` is built from a model directory's ``tokenizer.json`` and window (torch-free: only the
``tokenizers`` library).  Its ``fingerprint`` names the tokenizer, the window and the chunk overlap: an
engine uses ids that a worker made only when the fingerprint is the one of the model that embeds them,
and tokenizes the text itself otherwise (another model, or a worker of another configuration).

Tokenized work travels as ``TokenizedText`` (a query or an input: a ``str`` that also carries its ids, so
every path that reads texts, such as the embedding cache's keys and the keyword leg, keeps working) and
``TokenizedChunks`` (a document: its chunk spans and each chunk's ids).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from arrwdb.embed.chunking import DEFAULT_OVERLAP, check_window, spans_from_offsets

SPECIAL_TOKENS = 2  # [CLS] and [SEP]


class TokenizedText(str):
    """A text with the ids its model reads (special tokens included, truncated to the window), made by
    the tokenizer named ``tokenizer`` (a ``TextTokenizer.fingerprint``); ``by_worker``: in an HTTP
    worker (it came over the engine protocol), not in the engine."""

    ids: list[int]
    tokenizer: str
    by_worker: bool

    def __new__(cls, text: str, ids: list[int], tokenizer: str, by_worker: bool = False) -> TokenizedText:
        made = super().__new__(cls, text)
        made.ids = ids
        made.tokenizer = tokenizer
        made.by_worker = by_worker
        return made


@dataclass(frozen=True)
class TokenizedChunks:
    """A document's text as a model's tokenizer cuts it: chunk ``(start, end)`` character spans and each
    chunk's ids (as ``TokenizedText.ids``), by the tokenizer named ``tokenizer``."""

    tokenizer: str
    spans: list[tuple[int, int]]
    ids: list[list[int]]
    by_worker: bool = False

    def texts(self, text: str) -> list[str]:
        """The chunk texts, each carrying its ids."""
        return [
            TokenizedText(text[start:end], ids, self.tokenizer, self.by_worker)
            for (start, end), ids in zip(self.spans, self.ids, strict=True)
        ]


def stored_tokenizer_json(model_dir: Path) -> str | None:
    """The directory's ``tokenizer.json`` as text; None when it has none (only ``transformers`` can build
    one then: the model embedder does, an HTTP worker leaves such a model's texts to the engine)."""
    path = model_dir / "tokenizer.json"
    return path.read_text() if path.exists() else None


class TextTokenizer:
    """One model's tokenizer: ``encode`` gives the ids the model reads, ``chunk_spans`` the windows a
    long document is cut into (``arrwdb.embed.chunking``)."""

    def __init__(self, tokenizer_json_text: str, window: int, chunk_overlap: int = DEFAULT_OVERLAP) -> None:
        # Set before the library loads: no tokenizer thread pool (a worker's event loop or the engine's
        # prepare thread already runs beside the device; forked processes would deadlock on it).
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        from tokenizers import Tokenizer

        self.max_tokens = window - SPECIAL_TOKENS
        check_window(self.max_tokens, chunk_overlap)
        self.window = window
        self.chunk_overlap = chunk_overlap
        digest = hashlib.sha256(tokenizer_json_text.encode())
        digest.update(f"|{window}|{chunk_overlap}".encode())
        self.fingerprint = digest.hexdigest()[:32]
        # tokenizer.json carries its own truncation and fixed padding (128 for MiniLM): replaced here.
        # Padding is the embedder's, per sub-batch, so the tokenizer does none.
        self._tokenizer = Tokenizer.from_str(tokenizer_json_text)
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=window)
        # A second instance for chunking: it must see every token, and settings are per instance.
        self._chunk_tokenizer = Tokenizer.from_str(tokenizer_json_text)
        self._chunk_tokenizer.no_padding()
        self._chunk_tokenizer.no_truncation()
        self.vocab_size = self._tokenizer.get_vocab_size()

    @classmethod
    def of_directory(cls, model_dir: Path, window: int, chunk_overlap: int) -> TextTokenizer | None:
        """The tokenizer of a model directory at ``window``; None without a ``tokenizer.json``."""
        text = stored_tokenizer_json(model_dir)
        return None if text is None else cls(text, window, chunk_overlap)

    def token_id(self, token: str) -> int | None:
        found = self._tokenizer.token_to_id(token)
        return None if found is None else int(found)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """The ids the model reads for each text: special tokens included, truncated to the window."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)] if texts else []

    def tokenized(self, texts: list[str]) -> list[TokenizedText]:
        return [TokenizedText(text, ids, self.fingerprint) for text, ids in zip(texts, self.encode(texts), strict=True)]

    def chunk_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the overlapping windows that cover ``text`` (one span when it fits)."""
        enc = self._chunk_tokenizer.encode(text, add_special_tokens=False)
        return spans_from_offsets(enc.offsets, enc.word_ids, len(text), self.max_tokens, self.chunk_overlap)

    def cut(self, text: str) -> tuple[list[tuple[int, int]], list[int] | None]:
        """``chunk_spans`` in one pass, and the ids of the one chunk when the text fits one window (that
        pass's encoding with the special tokens added: what ``encode`` gives it); None otherwise."""
        whole = self._chunk_tokenizer.encode(text, add_special_tokens=False)
        spans = spans_from_offsets(whole.offsets, whole.word_ids, len(text), self.max_tokens, self.chunk_overlap)
        if len(spans) == 1 and len(whole.ids) <= self.max_tokens:
            return spans, self._tokenizer.post_process(whole).ids
        return spans, None

    def chunks(self, text: str) -> TokenizedChunks:
        """The text's chunks and each chunk's ids (a text that fits one window is tokenized once)."""
        spans, ids = self.cut(text)
        chunk_ids = [ids] if ids is not None else self.encode([text[start:end] for start, end in spans])
        return TokenizedChunks(self.fingerprint, spans, chunk_ids)
