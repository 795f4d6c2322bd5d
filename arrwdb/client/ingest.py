"""Bulk-load a JSONL file of Documents into a library through ``POST .../documents/batch``.

Each batch is parsed and checked in full before it is sent, so a malformed line stops the run with
its line number and nothing of its batch reaches the server (earlier batches are already committed:
they were acknowledged as durable).  An overloaded (429) or not-yet-ready (503) answer did nothing on
the server (API.md), so that batch is simply sent again after ``Retry-After``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from arrwdb.client.client import ApiError, Client

MAX_BATCH = 1000  # API.md: a batch holds 1 to 1000 documents
RETRYABLE = frozenset({429, 503})
# Looked up at call time so tests can patch it without touching the global time.sleep.
_sleep = time.sleep


class IngestError(Exception):
    """The input file cannot be ingested as it is (a malformed line, a line that is not an object)."""


@dataclass(frozen=True, slots=True)
class IngestReport:
    documents: int
    batches: int
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0


def _batches(stream: BinaryIO, path: Path, batch_size: int) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Yield (documents, bytes consumed) per batch; raises IngestError before yielding a bad batch."""
    documents: list[dict[str, Any]] = []
    consumed = 0
    for number, line in enumerate(stream, start=1):
        consumed += len(line)
        if not line.strip():
            continue
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise IngestError(f"{path}:{number}: invalid JSON: {exc}") from None
        if not isinstance(document, dict):
            kind = type(document).__name__
            raise IngestError(f"{path}:{number}: expected a JSON object (a Document), got {kind}")
        documents.append(document)
        if len(documents) == batch_size:
            yield documents, consumed
            documents, consumed = [], 0
    if documents or consumed:
        yield documents, consumed


def _send(client: Client, library: str, documents: list[dict[str, Any]], max_retries: int) -> list[str]:
    for attempt in range(max_retries + 1):
        try:
            return client.add_documents(library, documents)
        except ApiError as exc:
            if exc.status not in RETRYABLE or attempt == max_retries:
                raise
            # Without a Retry-After, back off exponentially (0.5 s, 1 s, 2 s ... capped at 30 s).
            delay = exc.retry_after if exc.retry_after is not None else min(30.0, 0.5 * 2**attempt)
            _sleep(delay)
    raise AssertionError("unreachable")  # the loop either returns or raises


def ingest_jsonl(
    path: Path,
    library: str,
    client: Client,
    batch_size: int = 256,
    progress: bool = True,
    max_retries: int = 10,
    create: bool = False,
) -> IngestReport:
    """Post every Document of ``path`` (one JSON object per line) to ``library``, in input order;
    ``create``: first create the library (server defaults) if it does not exist.

    Transport failures (timeouts, a dropped connection) are not retried: the batch may have been
    committed, and resending documents without an ``id`` would duplicate them.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
    path = Path(path)
    started = time.perf_counter()
    documents = batches = 0
    with (
        path.open("rb") as stream,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"ingest {path.name}",
            disable=not progress,
        ) as bar,
    ):
        if create:  # once the file could be opened: a wrong path creates nothing
            client.get_or_create_library(library)
        for batch, consumed in _batches(stream, path, batch_size):
            if batch:
                _send(client, library, batch, max_retries)
                documents += len(batch)
                batches += 1
                bar.set_postfix(documents=documents, refresh=False)
            bar.update(consumed)  # the bar advances only over committed bytes
    return IngestReport(documents=documents, batches=batches, seconds=time.perf_counter() - started)
