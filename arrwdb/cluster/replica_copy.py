"""A replica's side of replication: applying the primary's change pages, and remembering how far it got.

A replica's position for a shard is ``(epoch, sequence)``: the primary's epoch and the last sequence of
that primary's log it has applied (the primary's own numbering: the replica's store numbers its writes
its own way).  Positions are kept in ``replication.json`` in the engine's folder, written after each
page commits, so a position never runs ahead of the data; a position lost or older than the data only
makes the primary send changes again (applying a document's state twice is harmless).

A page comes either after the replica's position (catch-up: no gap allowed) or as the first page of a
bootstrap (``settings`` given): the replica's copy is dropped and made anew, and the pages that follow
carry every document from the start of the primary's log.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from arrwdb.errors import Conflict, NotFound, StaleShardMap
from arrwdb.records import ChangePage, Delete, Upsert

if TYPE_CHECKING:
    from arrwdb.engine.api import LocalEngine

Position = tuple[int, int]  # (the primary's epoch, the last of its sequences applied)


class Positions:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            loaded = orjson.loads(path.read_bytes())
            self._known: dict[str, list[int]] = {k: [int(v[0]), int(v[1])] for k, v in loaded.items()}
        except (OSError, ValueError, TypeError, IndexError):  # none yet, or unreadable: every copy bootstraps
            self._known = {}

    def get(self, key: str) -> Position | None:
        found = self._known.get(key)
        return None if found is None else (found[0], found[1])

    def set(self, key: str, epoch: int, seq: int) -> None:
        self._known[key] = [epoch, seq]
        self._save()

    def forget(self, key: str) -> None:
        if self._known.pop(key, None) is not None:
            self._save()

    def _save(self) -> None:
        with self._lock:
            partial = self.path.with_suffix(".tmp")
            partial.write_bytes(orjson.dumps(self._known))
            os.replace(partial, self.path)


async def apply_page(
    api: LocalEngine,
    positions: Positions,
    tenant: str,
    key: str,
    epoch: int,
    page: ChangePage,
    settings: dict[str, Any] | None,
) -> int:
    """Apply one page to the copy ``key`` (durable and searchable on return); the new position's sequence."""
    known = positions.get(key)
    if known is not None and known[0] > epoch:
        raise StaleShardMap(f"{key} follows epoch {known[0]}: a primary of epoch {epoch} is no longer one")
    if settings is not None:
        positions.forget(key)
        with contextlib.suppress(NotFound):
            await api.delete_library(tenant, key)
        await api.create_library(
            tenant,
            key,
            settings["dimension"],
            settings["index_type"],
            settings["metric"],
            settings["index_params"],
            _model_of(api, settings),
        )
    elif known is None or known[0] != epoch or known[1] < page.after:
        raise Conflict(f"{key} is at {known}, not at ({epoch}, {page.after}) or later: it needs a bootstrap")
    ops = [Upsert(doc) for doc in page.documents] + [Delete(doc_id, missing_ok=True) for doc_id in page.deleted]
    if ops:
        engine = api.engine
        await engine.committer.write(engine.library(tenant, key).record.id, ops)
    positions.set(key, epoch, page.upto)
    return page.upto


def _model_of(api: LocalEngine, settings: dict[str, Any]) -> str | None:
    """The model to name when making the copy: the primary's, unless the library's dimension is not
    that model's (a library of the client's vectors is made with no model named, as the primary's was)."""
    model = settings["model"]
    embedder = api.engine.models.embedders.get(model) if model else None
    return model if embedder is not None and embedder.dimension == settings["dimension"] else None
