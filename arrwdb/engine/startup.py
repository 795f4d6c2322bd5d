"""Loading the libraries at start: their vectors (from the snapshot saved with the last index build,
then the newer rows from SQLite) on the device worker before /ready, and what filters and hits need
(metadata, titles and rows per document) in the background after it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from arrwdb.errors import DeadlineExceeded, NotReady
from arrwdb.index import snapshot
from arrwdb.library.library import DocumentTables, LibraryState, row_entries_of
from arrwdb.records import LibraryRecord, Metadata
from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker
from arrwdb.runtime.thread_priority import lower_this_thread
from arrwdb.store.store import Store

log = logging.getLogger("arrwdb.engine.startup")


def load_library(record: LibraryRecord, device: torch.device, store: Store, vectors_path: Path) -> LibraryState:
    """The library's vectors, on the worker.  Its documents' metadata (what filters need) is read later
    by ``DocumentLoader``: a million documents take seconds of Python work that need not delay /ready."""
    started = time.perf_counter()
    rebuilt = store.ensure_keyword_index(record.id)  # recovery: a keyword index that is missing
    if rebuilt is not None:
        log.warning("library %s: keyword index rebuilt from %d chunks", record.id, rebuilt)
    state = LibraryState(record, device)
    after = _load_vector_snapshot(state, store, vectors_path)
    for row_ids, vectors in store.iter_vectors(record.id, record.dimension, after=after):
        state.load(row_ids, vectors)
    state.begin_document_load(lambda: store.count_documents(record.id))
    log.info("library %s: %d vectors loaded in %.1f s", record.id, len(state.index), time.perf_counter() - started)
    return state


class DocumentLoader:
    """Reads the documents' metadata of the libraries loaded at start on a thread of its own, one library
    after the other, and installs each on the device worker (``LibraryState.finish_document_load``).
    Filtered searches of a library wait for ``wait(library_id)``; nothing else does."""

    def __init__(self, store: Store, worker: DeviceWorker, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._worker = worker
        self._loop = loop
        self._done: dict[str, asyncio.Future[None]] = {}

    def start(self, states: list[LibraryState]) -> None:
        waiting = [state for state in states if not state.documents_loaded]
        for state in waiting:
            self._done[state.record.id] = self._loop.create_future()
        if waiting:
            threading.Thread(target=self._run, args=(waiting,), name="arrwdb-load-docs", daemon=True).start()

    async def wait(self, library_id: str, deadline: float) -> None:
        """Until the library's filter state is installed, or ``deadline`` (time.monotonic) passes."""
        done = self._done.get(library_id)
        if done is None:
            return
        try:  # shielded: one caller's timeout must not cancel it for the others
            await asyncio.wait_for(asyncio.shield(done), timeout=deadline - time.monotonic())
        except TimeoutError:
            raise DeadlineExceeded("the library's filter state was still loading when the deadline passed") from None

    async def wait_all(self) -> None:
        """Until every library's filter state is installed or has failed."""
        await asyncio.gather(*(asyncio.shield(done) for done in self._done.values()), return_exceptions=True)

    def _run(self, states: list[LibraryState]) -> None:
        lower_this_thread()
        for state in states:
            outcome: BaseException | None = None
            try:
                tables = _read_documents(self._store, state.record.id)
                call_on_worker(self._worker, lambda s=state, t=tables: s.finish_document_load(t))
                log.info("library %s: filter state of %d documents loaded", state.record.id, len(tables.doc_meta))
            except BaseException as exc:  # reported to every filtered search of the library
                log.exception("library %s: loading its documents failed", state.record.id)
                outcome = exc
            try:
                self._loop.call_soon_threadsafe(self._settle, state.record.id, outcome)
            except RuntimeError:  # the server stopped meanwhile: its loop is closed
                return

    def _settle(self, library_id: str, outcome: BaseException | None) -> None:
        done = self._done[library_id]
        if outcome is None:
            done.set_result(None)
            return
        done.set_exception(NotReady(f"the filter state of this library could not be loaded: {outcome}"))
        done.exception()  # marked as seen: a library never searched with a filter must not log it again


def _read_documents(store: Store, library_id: str) -> DocumentTables:
    doc_meta: dict[str, Metadata] = {}
    doc_rows: dict[str, tuple[int, ...]] = {}
    doc_titles: dict[str, str] = {}
    docs_with_text: set[str] = set()
    for doc_id, title, metadata, has_text, rows in store.iter_document_rows(library_id):
        doc_meta[doc_id] = metadata
        doc_rows[doc_id] = tuple(rows)
        if title is not None:
            doc_titles[doc_id] = title
        if has_text:
            docs_with_text.add(doc_id)
    return DocumentTables(doc_meta, doc_rows, row_entries_of(doc_meta, doc_rows, doc_titles), docs_with_text)


def _load_vector_snapshot(state: LibraryState, store: Store, base: Path) -> int:
    """Load the library's vector snapshot (written by its last full ANN build or by the builder thread
    as it grew; the rows still in the store); returns the last row id it covered, so only newer rows
    are read from SQLite.  -1 when there is none."""
    from arrwdb.engine.index_builder import expected_meta

    if not snapshot.exists(base):
        return -1
    try:
        # Room to grow by an eighth before the first write after a restart has to copy the matrix.
        rows, buffer = snapshot.load_vectors(base, expected_meta(state), state.record.dimension, spare_fraction=0.125)
    except snapshot.SnapshotError as exc:
        log.warning("library %s: ignoring its vector snapshot (%s)", state.record.id, exc)
        snapshot.remove(base)
        return -1
    if not len(rows):
        return -1
    last = int(rows[-1])
    # Row ids only grow, so every live row up to the snapshot's last one is in the snapshot: when their
    # count matches, none was deleted since, and the buffer is used as it is.
    if store.count_rows_upto(state.record.id, last) != len(rows):
        keep = np.isin(rows, store.live_row_ids(state.record.id), assume_unique=True)
        count = int(keep.sum())
        buffer[:count] = buffer[: len(rows)][keep]
        rows = rows[keep]
    if not state.index.adopt(rows, buffer):
        state.load(rows, buffer[: len(rows)])
    state.snapshot_rows = len(rows)
    return last
