"""An ANN library index (IVF or HNSW on FAISS) that never gives up exactness guarantees.

Layout:
- ``flat``: every live vector in the exact torch index (``SplitExact``).  It serves the library until the
  first ANN index is built (or loaded), answers selective filters exactly, and holds the "fresh" rows.
  Once an HNSW graph over cosine or L2 rows is published, the exact index reads the graph's rows in
  place from the graph's own storage: a built library holds one copy of each vector.
- ``ann``: a FAISS index over the rows up to ``built_upto``, built or extended on the builder thread
  on a private copy and then published here; a published FAISS object is never mutated again.
- fresh rows (ids above ``built_upto``) are searched exactly beside the ANN index and merged, so a
  write is searchable the moment it is acknowledged, however slow HNSW insertion is.
- deletes and replaced rows become tombstones, excluded INSIDE the FAISS search by an ID selector;
  past 20% tombstones the index is rebuilt in the background.
- what the builder does next (build, extend, upgrade) is ``build_plan.next_job``'s answer.
- each build or extension is calibrated before it is published (``calibrate.py``): the search effort
  (efSearch, nprobe) that queries use unless they name their own reaches ``target_recall``.  A bulk
  import's extensions (chunks) keep the published calibration while it was measured on at least half
  the rows; once the import goes quiet the builder folds in what is left, calibrates and saves.
- an import's graph (the first graph of a library served from the CPU that leaves ``ef_construction``
  to arrwdb, built while rows are coming in) is a light one, built at ``IMPORT_EF_CONSTRUCTION``, about
  half the work of the library's own, and extended at it; the "upgrade" rebuilds it at the library's
  efConstruction behind the published light graph, and swaps it in like any build.

Mutated only on the device worker; the builder reaches it through worker jobs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from arrwdb.index import calibrate, faiss_memory, faiss_ops, faiss_search
from arrwdb.index.ann_statistics import ann_statistics
from arrwdb.index.build_plan import BuildInput, IndexFigures, next_job
from arrwdb.index.calibrate import Calibration
from arrwdb.index.flat import FlatIndex
from arrwdb.index.params import HNSWParams, import_ef_construction
from arrwdb.index.split_exact import SplitExact
from arrwdb.records import LibraryRecord

# Filters that match at most this many rows, or this share of the library, are searched exactly:
# a graph or list search restricted to few ids misses matches (HNSW: 5 allowed -> 1 found).
EXACT_FILTER_ROWS = 4096
EXACT_FILTER_FRACTION = 0.2
# A library that took rows within this many seconds is importing: its extensions are import chunks.
IMPORT_QUIET_S = 1.0
RESCORE_FACTOR = calibrate.RESCORE_FACTOR  # SQ8/PQ propose k * 4 candidates, re-scored exactly


class AnnIndex:
    def __init__(
        self, record: LibraryRecord, device: torch.device, on_needs_build: Callable[[], None] | None = None
    ) -> None:
        self.dimension = record.dimension
        self.metric = record.metric
        self.index_type = record.index_type
        self.params = dict(record.index_params)
        self.flat = SplitExact(FlatIndex(record.dimension, record.metric, device))
        self.ann: Any = None
        self.ann_rows = np.empty(0, dtype=np.int64)  # sorted row ids inside ``ann``
        self.built_upto = -1
        self.trained_rows = 0
        self.tombstones: set[int] = set()
        self.building = False
        self.build_requested = False
        self.removed_during_build: list[int] = []
        self.builds = 0
        self.last_build_seconds = 0.0
        self.min_rows = faiss_ops.min_rows_to_build(self.index_type, self.params)
        # efConstruction of an import's light graph (None: none is light; a GPU serves its own graph,
        # trained from the rows), of the library's graphs, and of the published graph.
        light = import_ef_construction(self.index_type, self.params)
        self.light_ef_construction = light if device.type == "cpu" else None
        hnsw = self.index_type == "hnsw"
        self.ef_construction = HNSWParams.from_dict(self.params, self.dimension).ef_construction if hnsw else None
        self.graph_ef_construction: int | None = None
        self.light_since = 0.0  # time.monotonic() when the last light graph was published
        self.upgrading = False  # the running build is the upgrade of a light graph
        # None while the library loads from the store: the builder is asked once, after loading.
        self._on_needs_build = on_needs_build
        self._tombstone_version = 0
        self._selector_cache: tuple[object, faiss_search.Selector] | None = None
        self.served: Any = None  # what searches use: ``ann`` or its GPU copy (faiss_search.serve)
        self.calibration: Calibration | None = None  # of the published ``ann``
        self.calibrated_rows = 0  # rows the graph held when ``calibration`` was measured on it
        self.last_add_at = float("-inf")  # time.monotonic() of the last add

    def __len__(self) -> int:
        return len(self.flat)

    # -- mutation (device worker) --------------------------------------------------------------

    def add(self, row_ids: np.ndarray, vectors: np.ndarray, imported: bool = True) -> None:
        """``imported`` False: rows loaded from the store at start-up, which do not make the library
        an importing one (``importing``)."""
        self.flat.add(row_ids, vectors)
        if imported:
            self.last_add_at = time.monotonic()
        self._maybe_request_build()

    def adopt(self, row_ids: np.ndarray, buffer: np.ndarray) -> bool:
        """Start-up only: the exact rows from a vector snapshot, without a copy (FlatIndex.adopt)."""
        return self.flat.adopt(row_ids, buffer)

    def remove(self, row_ids: np.ndarray) -> None:
        self.flat.remove(row_ids)
        removed = [int(r) for r in row_ids]
        if self.building:
            self.removed_during_build.extend(removed)
        self.tombstones.update(r for r in removed if r <= self.built_upto)
        self._tombstone_version += 1
        self._maybe_request_build()

    def set_build_requester(self, on_needs_build: Callable[[], None]) -> None:
        self._on_needs_build = on_needs_build

    def _maybe_request_build(self) -> None:
        if self._on_needs_build is None or self.building or self.build_requested:
            return
        if self.plan() is not None:
            self.build_requested = True
            self._on_needs_build()

    def exact_rows(self) -> int:
        return self.fresh_count()

    def fresh_count(self) -> int:
        return len(self.flat.live_rows(after=self.built_upto)) if self.ann is not None else len(self.flat)

    def importing(self, quiet_s: float = IMPORT_QUIET_S) -> bool:
        """Whether rows came in the last ``quiet_s`` seconds (a bulk import is committing)."""
        return time.monotonic() - self.last_add_at < quiet_s

    def light_graph(self) -> bool:
        """Whether the published graph is a light one (built during an import), due to be upgraded."""
        built, own = self.graph_ef_construction, self.ef_construction
        return built is not None and own is not None and built < own

    def calibration_stale(self) -> bool:
        """Whether the published graph grew (import chunks) since its calibration was measured."""
        return self.ann is not None and self.calibration is not None and self.calibrated_rows != len(self.ann_rows)

    def plan(self, settle: bool = False) -> str | None:
        """What the builder should do next, if anything (``build_plan.next_job``).  ``settle``: an import
        went quiet; the few rows left fresh (below the extension threshold) go into the graph too."""
        built = self.ann is not None
        return next_job(
            IndexFigures(
                index_type=self.index_type,
                live_rows=len(self.flat),
                min_rows=self.min_rows,
                built=built,
                ann_rows=len(self.ann_rows),
                tombstones=len(self.tombstones),
                trained_rows=self.trained_rows,
                fresh_rows=self.fresh_count() if built else 0,
                importing=self.importing(),
                calibration_stale=self.calibration_stale(),
                light_graph=self.light_graph(),
                light_age_s=time.monotonic() - self.light_since,
            ),
            settle,
        )

    # -- the builder's side (each called on the device worker) ----------------------------------

    def begin(self, kind: str) -> BuildInput:
        """The input of the job ``kind`` (``plan``'s answer): "upgrade" is a "build" at the library's
        efConstruction; an import's build (the library's first graph, or a rebuild of a light one,
        while rows are coming in) makes a light graph."""
        self.building = True
        self.upgrading = kind == "upgrade"
        self.removed_during_build = []
        if self.upgrading:
            kind = "build"
        after = -1 if kind == "build" else self.built_upto
        rows, vectors = self.flat.copy_rows(after=after)
        if kind == "extend" and not faiss_ops.can_extend(self.ann, vectors):
            kind = "build"
            rows, vectors = self.flat.copy_rows()
        import_graph = kind == "build" and not self.upgrading and (self.ann is None or self.light_graph())
        params = self.params
        if import_graph and self.light_ef_construction is not None and self.importing():
            params = {**self.params, "ef_construction": self.light_ef_construction}
        return BuildInput(kind, rows, vectors, self.ann if kind == "extend" else None, params)

    def is_import_chunk(self, job: BuildInput) -> bool:
        """Whether ``job`` may go in uncalibrated, keeping the published calibration: an extension while
        rows are still coming, of a graph whose calibration was measured on at least half the rows it
        will hold (so the search effort in use is never calibrated on a graph less than half the size)."""
        held_after = len(self.ann_rows) + len(job.rows)
        return (
            job.kind == "extend"
            and self.calibration is not None
            and self.importing()
            and 2 * self.calibrated_rows >= held_after
        )

    def calibration_rows(self, job: BuildInput | None) -> tuple[np.ndarray, int]:
        """(sorted live row ids that the index ``job`` makes will hold, how many rows it holds with the
        deleted ones): the population its calibration samples and searches exactly.  ``job`` None: the
        published index's."""
        if job is None:
            upto, held = self.built_upto, len(self.ann_rows)
        else:
            upto = max(self.built_upto, int(job.rows[-1])) if len(job.rows) else self.built_upto
            held = len(job.rows) + (len(self.ann_rows) if job.kind == "extend" else 0)
        live = self.flat.live_rows()
        return live[live <= upto], held

    def set_calibration(self, ann: Any, calibration: Calibration | None) -> None:
        """The calibration of ``ann``, if it is still the published index."""
        if self.ann is ann:
            self.calibration = calibration
            self.calibrated_rows = len(self.ann_rows) if calibration is not None else 0
            self._maybe_request_build()  # a light graph's upgrade waits for its calibration

    def vectors_of(self, row_ids: np.ndarray) -> np.ndarray:
        return self.flat.vectors_of(row_ids)

    def exact_neighbours(self, queries: np.ndarray, k: int, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the exact top ``k`` of each query among the rows ``among`` (for calibration)."""
        return self.flat.search(queries, k, among)

    def finish(
        self,
        job: BuildInput,
        ann: Any,
        seconds: float,
        calibration: Calibration | None = None,
        keep_calibration: bool = False,
    ) -> None:
        """Publish ``ann``, the index ``job`` made, with its ``calibration``; ``keep_calibration``: an
        import chunk, published with the calibration in use (``calibration_stale`` then says so)."""
        if len(job.rows):
            new_upto = max(self.built_upto, int(job.rows[-1]))
            removed = {r for r in self.removed_during_build if r <= new_upto}
            if job.kind == "build":
                self.ann_rows = job.rows
                self.tombstones = removed
                self.trained_rows = len(job.rows)
            else:
                self.ann_rows = np.concatenate([self.ann_rows, job.rows])
                self.tombstones |= removed
            self._publish(ann)
            if not keep_calibration:
                self.calibration = calibration
                self.calibrated_rows = len(self.ann_rows) if calibration is not None else 0
            self.built_upto = new_upto
            self.flat.rebase(faiss_ops.shared_storage(ann), new_upto)
            self.builds += 1
            self.last_build_seconds = seconds
            self._tombstone_version += 1
        self._end_build()

    def abort(self) -> None:
        self._end_build()

    def _publish(self, ann: Any) -> None:
        self.ann = ann
        self.served = faiss_search.serve(ann, self.index_type, self.metric, self.flat.device)
        self.graph_ef_construction = faiss_ops.graph_ef_construction(ann)
        if self.light_graph():
            self.light_since = time.monotonic()

    def _end_build(self) -> None:
        self.building = False
        self.upgrading = False
        self.build_requested = False
        self.removed_during_build = []
        self._maybe_request_build()

    def install(self, ann: Any, rows: np.ndarray, trained_rows: int, calibration: Calibration | None = None) -> None:
        """Publish an index loaded from a snapshot (with the calibration saved beside it): rows deleted
        since it was saved become tombstones, rows added since are fresh (they are in ``flat``, loaded
        from the store)."""
        live = self.flat.live_rows()
        upto = int(rows[-1]) if len(rows) else -1
        self.ann_rows, self.built_upto, self.trained_rows = rows, upto, trained_rows
        self._publish(ann)
        self.calibration = calibration
        self.calibrated_rows = len(rows) if calibration is not None else 0
        self.flat.rebase(faiss_ops.shared_storage(ann), upto)
        self.tombstones = {int(r) for r in np.setdiff1d(rows, live[live <= upto], assume_unique=True)}
        self._tombstone_version += 1
        self._maybe_request_build()

    # -- search (device worker) ----------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, params: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = params or {}
        live = len(self.flat)
        eligible = live if allowed is None else len(allowed)
        exact_filter = allowed is not None and eligible <= max(EXACT_FILTER_ROWS, EXACT_FILTER_FRACTION * live)
        if self.ann is None or exact_filter or eligible == 0:
            return self.flat.search(queries, k, allowed)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.metric == "cosine":
            # np.linalg.norm's own sum and square root, without its checks: a lone query's search
            # is short enough for those to show.  A zero row stays zero (0 / 1).
            norms = np.sqrt(np.add.reduce(queries * queries, axis=1, keepdims=True))
            norms[norms == 0] = 1
            queries = queries / norms
        scores, ids = self._search_ann(queries, k, allowed, params, eligible / max(live, 1))
        fresh = self.flat.live_rows(after=self.built_upto) if allowed is None else allowed[allowed > self.built_upto]
        if len(fresh):
            fresh_scores, fresh_ids = self.flat.search(queries, k, fresh)
            scores, ids = _merge(scores, ids, fresh_scores, fresh_ids, k)
        # Never fewer than k hits when k are eligible: a query the ANN index under-served goes exact.
        wanted = min(k, eligible)
        if ids.shape[1] >= wanted and (not ids.size or ids.min() >= 0):
            return scores, ids  # every query has its hits: nothing to check one by one
        short = np.flatnonzero((ids >= 0).sum(axis=1) < wanted)
        if len(short):
            exact_scores, exact_ids = self.flat.search(queries[short], k, allowed)
            scores[short], ids[short] = exact_scores, exact_ids
        return scores, ids

    def _search_ann(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None, params: dict[str, Any], selectivity: float
    ) -> tuple[np.ndarray, np.ndarray]:
        # A filter thins out what a fixed search effort finds: widen the search in proportion.
        boost = 1.0 if allowed is None else min(1.0 / max(selectivity, 1e-3), 8.0)
        ef_search = nprobe = None
        if self.index_type == "hnsw":
            base = params.get("ef_search") or self.search_effort()
            ef_search = min(4096, math.ceil(base * boost))
        else:
            nlist = faiss_ops.ivf_nlist(self.ann) or 1
            base = params.get("nprobe") or self.search_effort() or 1
            nprobe = min(nlist, math.ceil(base * boost))
        rescore = self.params.get("encoding") in ("sq8", "pq")
        fetch = min(k * RESCORE_FACTOR, 4096) if rescore else k
        selector = self._selector(allowed)
        scores, ids = faiss_search.search_served(
            self.served,
            self.index_type,
            self.metric,
            queries,
            fetch,
            ef_search=ef_search,
            nprobe=nprobe,
            selector=selector,
        )
        if rescore:
            scores = self.flat.rescore(queries, ids)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
            ids = np.where(np.isfinite(scores), ids, -1)
        return scores, ids

    def search_effort(self) -> int | None:
        """efSearch (HNSW) or nprobe (IVF) for a query that names none: the calibrated value, else the
        index_params value or the built-in default (before the first calibration)."""
        if self.calibration is not None:
            return self.calibration.value
        nlist = faiss_ops.ivf_nlist(self.ann) if self.index_type == "ivf" and self.ann is not None else None
        return calibrate.default_value(self.index_type, self.params, nlist, self.dimension)

    def _selector(self, allowed: np.ndarray | None) -> faiss_search.Selector | None:
        if allowed is None and not self.tombstones:
            return None
        key: object = allowed if allowed is not None else ("live", self._tombstone_version)
        cached = self._selector_cache
        # A filter's allowed rows are cached per library version by LibraryState: the same array object
        # means the same filter.  Tombstone selectors are keyed by a tuple; never compare arrays by value.
        if cached is not None and (
            cached[0] is key or (isinstance(key, tuple) and isinstance(cached[0], tuple) and cached[0] == key)
        ):
            return cached[1]
        wanted = allowed if allowed is not None else self.flat.live_rows()
        selector = faiss_search.bitmap_selector(wanted, self.built_upto)
        self._selector_cache = (key, selector)
        return selector

    # -- figures -------------------------------------------------------------------------------

    def memory_bytes(self) -> int:
        ann = faiss_memory.memory_bytes(self.ann) if self.ann is not None else 0
        return self.flat.memory_bytes() + ann + self.ann_rows.nbytes

    def statistics(self) -> dict[str, Any]:
        return ann_statistics(self)


def _merge(
    scores_a: np.ndarray, ids_a: np.ndarray, scores_b: np.ndarray, ids_b: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([scores_a, scores_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
