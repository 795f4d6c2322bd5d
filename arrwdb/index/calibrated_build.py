"""One build job of an ANN library, calibrated: build (or extend) without a held-out sample of the
job's rows, calibrate the search effort with that sample as queries (``calibrate.py``), then add the
sample.  Runs on the builder thread (or inline in tests); what belongs to the device worker (the exact
index) is reached through ``on_worker``, a few short calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from arrwdb.index import calibrate, faiss_ops, faiss_search
from arrwdb.index.ann import AnnIndex
from arrwdb.index.build_plan import BuildInput
from arrwdb.index.calibrate import Calibration

T = TypeVar("T")
OnWorker = Callable[[Callable[[], T]], T]
EXACT_CHUNK = 32  # queries per exact search on the device worker: searches are served between


def held_out(job_rows: int, seed: int = 0) -> np.ndarray:
    """Boolean mask of the job's rows kept out of the index until it is calibrated: up to
    ``SAMPLE_QUERIES``, at most an eighth of the job."""
    size = min(calibrate.SAMPLE_QUERIES, job_rows // 8)
    mask = np.zeros(job_rows, dtype=bool)
    if size:
        mask[np.random.default_rng(seed).choice(job_rows, size, replace=False)] = True
    return mask


def build(
    index: AnnIndex,
    job: BuildInput,
    on_worker: OnWorker[Any],
    pace: Callable[[], None] | None = None,
    calibrated: bool = True,
) -> tuple[Any, Calibration | None]:
    """The index ``job`` asks for, with its calibration; ``calibrated`` False (an import chunk, an
    extension only): the rows go in as they are, in id order, with no calibration (None)."""
    if not calibrated and job.kind == "extend":
        return faiss_ops.extend(job.base, job.rows, job.vectors, pace), None
    held = held_out(len(job.rows))
    if job.kind == "build":
        ann = faiss_ops.build(index.index_type, job.params, index.metric, job.rows, job.vectors, pace, held)
    else:
        ann = faiss_ops.extend(job.base, job.rows[~held], job.vectors[~held], pace)
    query_ids, queries = job.rows[held], job.vectors[held]
    rows, count = on_worker(lambda: index.calibration_rows(job))
    among = np.setdiff1d(rows, query_ids, assume_unique=True)
    calibration = _calibrate(index, ann, query_ids, queries, among, count - len(query_ids), on_worker, pace)
    faiss_ops.add_rows(ann, query_ids, queries, pace)
    faiss_ops.sort_by_id(ann)  # rows in id order: the exact side reads them in place (split_exact.py)
    return ann, calibration


def calibrate_published(
    index: AnnIndex, ann: Any, on_worker: OnWorker[Any], pace: Callable[[], None] | None = None, at_least: int = 0
) -> Calibration:
    """The calibration of a published index (a snapshot saved without one, or a graph grown by import
    chunks), its sample rows inside it; ``at_least``: see ``calibrate.calibrate``."""
    rows, count = on_worker(lambda: index.calibration_rows(None))
    query_ids = calibrate.sample_rows(rows)
    queries = on_worker(lambda: index.vectors_of(query_ids))
    return _calibrate(index, ann, query_ids, queries, rows, count, on_worker, pace, at_least)


def _calibrate(
    index: AnnIndex,
    ann: Any,
    query_ids: np.ndarray,
    queries: np.ndarray,
    among: np.ndarray,
    ann_count: int,
    on_worker: OnWorker[Any],
    pace: Callable[[], None] | None,
    at_least: int = 0,
) -> Calibration:
    """``among``: the live rows ``ann`` holds (sorted); ``ann_count`` how many it holds, deleted ones
    included: those are kept out of its answers by a selector, as searches keep them out."""
    wanted = calibrate.K + 1 + calibrate.TIE_SLOTS
    parts = [
        on_worker(lambda chunk=queries[start : start + EXACT_CHUNK]: index.exact_neighbours(chunk, wanted, among))
        for start in range(0, len(queries), EXACT_CHUNK)
    ]
    exact_scores = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, wanted), dtype=np.float32)
    exact_ids = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, wanted), dtype=np.int64)
    selector = faiss_search.bitmap_selector(among, int(among[-1])) if 0 < len(among) < ann_count else None
    return calibrate.calibrate(
        ann,
        index.index_type,
        index.metric,
        index.params,
        query_ids,
        queries,
        exact_ids,
        pace,
        selector,
        exact_scores=exact_scores,
        at_least=at_least,
    )
