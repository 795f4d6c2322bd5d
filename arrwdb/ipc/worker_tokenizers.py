"""Tokenization in the HTTP worker: the engine receives token ids, not texts to tokenize.

A worker loads each model's ``TextTokenizer`` from the directory the engine names in its model list
(``models()``, read once the engine answers), checks that it comes out with the engine's fingerprint,
and tokenizes what a request will embed before sending it: a query's text, the texts of an embeddings
call, a document's chunks.  The texts travel too (stored, searched by keyword, cached by text); the
engine uses the ids when the fingerprint is its model's, and tokenizes the text itself otherwise (a
library of another model than the default, whose tokenizer a query's text was not cut with).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from arrwdb.embed.tokens import TextTokenizer
from arrwdb.library.inputs import DocumentInput, SearchInput

log = logging.getLogger("arrwdb.ipc.worker_tokenizers")

RETRY_S = 1.0  # while the engine cannot list its models, ask again at most this often
# Documents whose texts add up to more characters than this are tokenized on a thread, off the
# worker's event loop (the tokenizer leaves the GIL while it encodes).
THREAD_FROM_CHARS = 16_384


class WorkerTokenizers:
    """The engine's text tokenizers by model name, loaded in an HTTP worker."""

    def __init__(self, list_models: Callable[[], Awaitable[list[dict[str, Any]]]]) -> None:
        self._list_models = list_models
        self._by_model: dict[str, TextTokenizer] = {}
        self._default: str | None = None
        self._learned = False
        self._next_try = 0.0
        self._lock = asyncio.Lock()

    async def of(self, model: str | None) -> TextTokenizer | None:
        """The tokenizer of ``model`` (None: the default model), or None when the worker has none for it."""
        if not self._learned and time.monotonic() >= self._next_try:
            await self._learn()
        name = self._default if model is None else model
        return None if name is None else self._by_model.get(name)

    async def _learn(self) -> None:
        async with self._lock:
            if self._learned:
                return
            try:
                models = await self._list_models()
            except Exception as exc:  # not ready yet, or restarting: the engine tokenizes meanwhile
                log.debug("the engine's models are not known yet: %s", exc)
                self._next_try = time.monotonic() + RETRY_S
                return
            self._by_model = await asyncio.to_thread(load_tokenizers, models)
            self._default = next((m["id"] for m in models if m.get("default")), None)
            self._learned = True

    async def queries(self, queries: list[SearchInput]) -> list[SearchInput]:
        """The queries, with the text of each that will be embedded carrying its ids."""
        wanted = [i for i, query in enumerate(queries) if _embeds(query)]
        tokenizer = await self.of(None) if wanted else None
        if tokenizer is None:
            return queries
        texts = tokenizer.tokenized([str(queries[i].query) for i in wanted])
        out = list(queries)
        for i, text in zip(wanted, texts, strict=True):
            out[i] = dataclasses.replace(queries[i], query=text)
        return out

    async def texts(self, items: list[Any], model: str | None) -> list[Any]:
        """Texts to embed by ``model``, each carrying its ids (token-array inputs are left as they are)."""
        wanted = [i for i, item in enumerate(items) if isinstance(item, str)]
        tokenizer = await self.of(model) if wanted else None
        if tokenizer is None:
            return items
        texts = await _maybe_threaded(
            sum(len(items[i]) for i in wanted), tokenizer.tokenized, [items[i] for i in wanted]
        )
        out = list(items)
        for i, text in zip(wanted, texts, strict=True):
            out[i] = text
        return out

    async def documents(self, docs: list[DocumentInput]) -> list[DocumentInput]:
        """The documents, each one that the engine will embed carrying its chunks and their ids."""
        wanted = [i for i, doc in enumerate(docs) if doc.embedding is None and doc.text and doc.text.strip()]
        tokenizer = await self.of(None) if wanted else None
        if tokenizer is None:
            return docs

        def cut() -> list[DocumentInput]:
            out = list(docs)
            for i in wanted:
                out[i] = dataclasses.replace(docs[i], chunks=tokenizer.chunks(docs[i].text or ""))
            return out

        return await _maybe_threaded(sum(len(docs[i].text or "") for i in wanted), cut)


def _embeds(query: SearchInput) -> bool:
    """Whether the engine embeds this query's text (a vector or hybrid search without a client vector)."""
    if query.query is None or query.embedding is not None:
        return False
    return query.retrieval is None or query.retrieval.mode != "keyword"


async def _maybe_threaded(chars: int, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args) if chars > THREAD_FROM_CHARS else fn(*args)


def load_tokenizers(models: list[dict[str, Any]]) -> dict[str, TextTokenizer]:
    """Each model's tokenizer, from the directory the engine names; a model whose tokenizer cannot be
    loaded here, or comes out with another fingerprint than the engine's, is left to the engine."""
    found: dict[str, TextTokenizer] = {}
    for model in models:
        source = model.get("tokenizer")
        if not source:
            continue
        try:
            tokenizer = TextTokenizer.of_directory(Path(source["dir"]), source["window"], source["overlap"])
        except Exception as exc:
            log.warning(
                "model %s: its tokenizer does not load in an HTTP worker (%s); the engine tokenizes", model["id"], exc
            )
            continue
        if tokenizer is None or tokenizer.fingerprint != source["id"]:
            log.info("model %s: the engine tokenizes its texts (no tokenizer.json a worker can load)", model["id"])
            continue
        found[model["id"]] = tokenizer
    return found
