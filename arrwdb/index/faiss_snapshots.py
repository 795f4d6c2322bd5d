"""Persistence of a FAISS index and its row ids, through ``arrwdb.index.snapshot`` (temp files, fsync,
rename, CRC checks).  Only the builder thread reads and writes snapshots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from arrwdb.index import snapshot
from arrwdb.index.faiss_ops import MipsGraph, faiss_module
from arrwdb.index.snapshot import SnapshotError


def save(index: Any, rows: np.ndarray, meta: dict[str, Any], base: Path) -> None:
    faiss = faiss_module()
    if isinstance(index, MipsGraph):
        meta = {**meta, "mips_max_norm": index.max_norm}
        index = index.index
    blob = faiss.serialize_index(index)
    snapshot.write(base, {".faiss": memoryview(blob), ".rows": memoryview(np.ascontiguousarray(rows, np.int64))}, meta)


def load(base: Path, expected: dict[str, Any]) -> tuple[Any, np.ndarray, dict[str, Any]]:
    faiss = faiss_module()
    # FAISS reads the file while a second thread checks its CRCs: both stream the same pages, so a cold
    # start reads the disk once, and no multi-GB Python copy is made.  The index is used only once the
    # check has passed.  Only the builder thread reads and writes snapshots: no file changes meanwhile.
    snapshot.read_meta(base, expected)  # made for other settings: refused before reading gigabytes
    with ThreadPoolExecutor(1, thread_name_prefix="arrwdb-verify") as pool:
        checked = pool.submit(snapshot.verify, base, expected)
        try:
            index = faiss.read_index(str(snapshot.part(base, ".faiss")))
            rows = np.fromfile(snapshot.part(base, ".rows"), dtype=np.int64)
        except (RuntimeError, OSError) as exc:
            checked.result()  # a damaged file is reported as such
            raise SnapshotError(f"FAISS could not read the snapshot: {exc}") from exc
        meta = checked.result()
    if index.ntotal != len(rows):
        raise SnapshotError("snapshot index and rows disagree")
    if "mips_max_norm" in meta:
        return MipsGraph(index, float(meta["mips_max_norm"])), rows, meta
    return index, rows, meta


def remove_snapshot(base: Path) -> None:
    snapshot.remove(base)
