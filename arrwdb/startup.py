"""Loading one library at start: its vectors (from the snapshot saved with the last index build, then
the newer rows from SQLite) and what filters need (metadata and rows per document).  Runs on the device
worker."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from arrwdb.index import snapshot
from arrwdb.index.ann import AnnIndex
from arrwdb.library import LibraryState
from arrwdb.records import LibraryRecord
from arrwdb.store import Store

log = logging.getLogger("arrwdb.startup")


def load_library(record: LibraryRecord, device: torch.device, store: Store, vectors_path: Path) -> LibraryState:
    state = LibraryState(record, device)
    after = _load_vector_snapshot(state, store, vectors_path)
    for row_ids, vectors in store.iter_vectors(record.id, record.dimension, after=after):
        state.load(row_ids, vectors)
    for doc_id, metadata, rows in store.iter_document_rows(record.id):
        state.load_document(doc_id, metadata, rows)
    return state


def _load_vector_snapshot(state: LibraryState, store: Store, base: Path) -> int:
    """Load the vectors saved with the last index build (the rows still in the store); returns the last
    row id it covered, so only newer rows are read from SQLite.  -1 when there is none."""
    from arrwdb.builder import expected_meta

    if not isinstance(state.index, AnnIndex) or not snapshot.exists(base):
        return -1
    try:
        rows, vectors = snapshot.load_vectors(base, expected_meta(state), state.record.dimension)
    except snapshot.SnapshotError as exc:
        log.warning("library %s: ignoring its vector snapshot (%s)", state.record.id, exc)
        snapshot.remove(base)
        return -1
    if not len(rows):
        return -1
    live = np.isin(rows, store.live_row_ids(state.record.id), assume_unique=True)
    state.load(rows[live], vectors[live])
    return int(rows[-1])
