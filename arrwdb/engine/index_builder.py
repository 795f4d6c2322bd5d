"""The index builder: one background thread that trains, builds, extends, saves and loads ANN
indexes, so that none of it runs on the request path or blocks the device worker.

A build reads a copy of the rows (taken on the device worker), works on a private FAISS object,
calibrates its search effort (``arrwdb.index.calibrated_build``: exact neighbours come from the device
worker in short jobs), and publishes it with one short job on the device worker.  Searches keep being
answered throughout: by exact search until a first index exists, then by the previous index plus the
exact fresh segment.

A bulk import goes into the graph in chunks as its rows commit: each extension takes the rows committed
while the one before ran.  Such an import chunk keeps the published calibration (while it was measured
on at least half the rows: ``AnnIndex.is_import_chunk``); no extension saves a snapshot while another
one is due at once, nor is the vector snapshot written between chunks.  Once the library has taken no
rows for ``IMPORT_QUIET_S``, the builder settles it: the rows left fresh go in, the graph is
calibrated, the snapshots saved.  A graph built during the import is a light one
(``AnnIndex.light_graph``); after the settle it is rebuilt at the library's efConstruction (an
"upgrade" job) and swapped in, the light graph serving meanwhile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from arrwdb.index import calibrated_build, faiss_snapshots, snapshot
from arrwdb.index.ann import IMPORT_QUIET_S, AnnIndex
from arrwdb.index.build_plan import BuildInput
from arrwdb.index.calibrate import Calibration
from arrwdb.library.library import LibraryState
from arrwdb.records import LibraryRecord
from arrwdb.runtime.cores import usable_cores
from arrwdb.runtime.device_worker import DeviceWorker, call_on_worker
from arrwdb.runtime.thread_priority import lower_this_thread

log = logging.getLogger("arrwdb.engine.index_builder")
T = TypeVar("T")
SETTLE_POLL_S = IMPORT_QUIET_S / 4  # how often an importing library is checked for having gone quiet


class IndexBuilder:
    def __init__(
        self,
        worker: DeviceWorker,
        libraries: dict[str, LibraryState],
        snapshot_dir: Path,
        threads: int = 1,
        serving_idle: Callable[[], bool] = lambda: False,
        idle_threads: int | None = None,
    ) -> None:
        self.worker = worker
        self.libraries = libraries
        self.snapshot_dir = snapshot_dir
        # FAISS threads while the server serves, and once it has been idle a moment: a build that
        # nothing else is waiting beside (an import just finished) takes every core.
        self.threads = threads
        self.idle_threads = max(threads, idle_threads or usable_cores())
        self._serving_idle = serving_idle
        self._threads_now = threads
        self.thread_choices: list[int] = []  # the count chosen before each recent chunk (for tests, debugging)
        self._tasks: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._pending: set[tuple[str, str]] = set()
        self._records: dict[str, LibraryRecord] = {}
        self._prefetched: dict[str, tuple[object, object, dict[str, object]]] = {}
        self._settling: set[str] = set()  # libraries with import chunks published, to settle (builder thread)
        self._unsaved: set[str] = set()  # of those, the ones whose published index has no snapshot yet
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._main, name="arrwdb-builder", daemon=True)
        self._thread.start()

    def snapshot_path(self, library_id: str) -> Path:
        """Base path of the library's ANN snapshot (files ``.ann.faiss``, ``.ann.rows``, ``.ann.json``)."""
        return self.snapshot_dir / f"{library_id}.ann"

    def vectors_path(self, library_id: str) -> Path:
        """Base path of the library's exact-vector snapshot, which makes a cold start read one file
        instead of a million SQLite rows."""
        return self.snapshot_dir / f"{library_id}.vectors"

    # -- requests (any thread) -------------------------------------------------------------------

    def request_build(self, library_id: str) -> None:
        self._submit("build", library_id)

    def request_load(self, library_id: str) -> None:
        self._submit("load", library_id)

    def request_vectors(self, library_id: str) -> None:
        """At start-up the engine asks after the library's index load: writing a snapshot of a million
        rows takes seconds on the same builder thread, and the loaded index should not wait for it
        (docs/PERFORMANCE.md, "Cold start")."""
        self._submit("vectors", library_id)

    def forget(self, library_id: str) -> None:
        self._submit("forget", library_id)

    def _submit(self, task: str, library_id: str) -> None:
        with self._lock:
            if (task, library_id) in self._pending:
                return
            self._pending.add((task, library_id))
            self._idle.clear()
        self._tasks.put((task, library_id))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """For tests and benchmarks: wait until no task is queued or running and no import is left to
        settle."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        self._tasks.put(None)
        self._thread.join(timeout=5)  # a long build keeps running as a daemon; the process exits anyway

    # -- the thread ------------------------------------------------------------------------------

    def _main(self) -> None:
        lower_this_thread()
        handlers = {"vectors": self._vectors, "forget": self._forget}  # an exact library's, FAISS or not
        try:
            import faiss

            # Per thread: leaves the other cores to serving.  ``_threads_now`` already says so (set in
            # __init__, not here: a _pace() that ran first must not be overwritten by a late start).
            faiss.omp_set_num_threads(self.threads)
            handlers.update(build=self._build, load=self._load, prefetch=self._prefetch)
        except ImportError:
            log.warning("FAISS is not installed: ivf and hnsw libraries are served exactly")
        while True:
            try:
                item = self._tasks.get(timeout=SETTLE_POLL_S if self._settling else None)
            except queue.Empty:
                item = ("settle", "")
            if item is None:
                return
            with self._lock:
                self._pending.discard(item)
            task, library_id = item
            try:
                if task in handlers:
                    handlers[task](library_id)
                if self._settling:
                    self._settle_quiet()
            except Exception:
                log.exception("index %s failed for library %s", task, library_id)
            with self._lock:
                if not self._pending and not self._settling:
                    self._idle.set()

    def _pace(self) -> None:
        """Before each chunk of a build: every core while the server is idle, else ``threads``."""
        wanted = self.idle_threads if self._serving_idle() else self.threads
        del self.thread_choices[:-64]  # bounded: the recent choices are all anyone reads
        self.thread_choices.append(wanted)
        if wanted != self._threads_now:
            import faiss

            faiss.omp_set_num_threads(wanted)
            self._threads_now = wanted

    def _ann_of(self, library_id: str) -> tuple[LibraryState, AnnIndex] | None:
        state = self.libraries.get(library_id)
        if state is None or not isinstance(state.index, AnnIndex):
            return None
        return state, state.index

    def _still_current(self, library_id: str, state: LibraryState) -> bool:
        return self.libraries.get(library_id) is state

    def _settle_quiet(self) -> None:
        """Settle each importing library that has taken no rows for ``IMPORT_QUIET_S``."""
        for library_id in sorted(self._settling):
            found = self._ann_of(library_id)
            if found is None:
                self._settling.discard(library_id)
                self._unsaved.discard(library_id)
                continue
            state, index = found
            if not call_on_worker(self.worker, index.importing):
                self._settling.discard(library_id)
                self._build(library_id, settle=True)
                self._settle_light_graph(library_id, index)  # still light: its upgrade is still to come
                if library_id in self._unsaved and self._still_current(library_id, state):
                    self._save(library_id, state, index, call_on_worker(self.worker, lambda i=index: i.ann))
                self._vectors(library_id)  # deferred while the import ran (written only if due)

    def _build(self, library_id: str, settle: bool = False) -> None:
        found = self._ann_of(library_id)
        if found is None:
            return
        state, index = found
        plan = call_on_worker(self.worker, lambda: index.plan(settle))
        if plan is None:
            call_on_worker(self.worker, index.abort)
            if settle:
                self._recalibrate_if_stale(library_id, state, index)
            return

        def take() -> tuple[BuildInput, bool]:
            job = index.begin(plan)
            return job, index.is_import_chunk(job)

        job, chunk = call_on_worker(self.worker, take)
        started = time.perf_counter()
        try:
            ann, calibration = calibrated_build.build(index, job, self._on_worker, self._pace, calibrated=not chunk)
            if calibration is not None:
                _log_calibration(library_id, calibration)
        except Exception:
            call_on_worker(self.worker, index.abort)
            raise
        seconds = time.perf_counter() - started
        if not self._still_current(library_id, state):
            return
        call_on_worker(self.worker, lambda: index.finish(job, ann, seconds, calibration, keep_calibration=chunk))
        kind = "import chunk" if chunk else ("upgrade" if plan == "upgrade" else job.kind)
        log.info("library %s: %s of %d rows in %.1f s", library_id, kind, len(job.rows), seconds)
        # When another extension is due at once, the settle after it saves: a snapshot written now would
        # be superseded within seconds, and writing it delays that extension.  Due: enough rows for an
        # extension while an import is still committing; once it has ended, any row left fresh (the
        # settle folds them in).
        more_now = job.kind == "extend" and call_on_worker(
            self.worker, lambda: index.plan(settle=not index.importing()) not in (None, "upgrade")
        )
        if chunk or more_now:
            self._settling.add(library_id)
            self._unsaved.add(library_id)
            return
        self._settle_light_graph(library_id, index)
        self._save(library_id, state, index, ann)
        if job.kind == "build" and self._still_current(library_id, state):
            snapshot.save_vectors(self.vectors_path(library_id), job.rows, job.vectors, _expected(state))
            call_on_worker(self.worker, lambda: state.vector_snapshot_saved(len(job.rows)))

    def _settle_light_graph(self, library_id: str, index: AnnIndex) -> None:
        """A light graph is upgraded by the settle once the library is quiet: keep it in the settle's
        sight (a build that finished while rows were still coming asks for nothing after them)."""
        if call_on_worker(self.worker, index.light_graph):
            self._settling.add(library_id)

    def _recalibrate_if_stale(self, library_id: str, state: LibraryState, index: AnnIndex) -> None:
        """An import whose last chunk took every row: calibrate the published graph and save it.  Its
        rows are all inside it, and rows searched inside a graph overstate recall (ANN.md, "Recall
        target"), so the effort never drops below the one its last held-out calibration chose, on a graph
        at least half this size (``AnnIndex.is_import_chunk``)."""
        ann, kept = call_on_worker(
            self.worker, lambda: (index.ann, index.calibration) if index.calibration_stale() else (None, None)
        )
        if ann is None:
            return
        at_least = kept.value if kept is not None and not kept.user_set else 0
        calibration = calibrated_build.calibrate_published(index, ann, self._on_worker, self._pace, at_least)
        _log_calibration(library_id, calibration)
        call_on_worker(self.worker, lambda: index.set_calibration(ann, calibration))
        self._save(library_id, state, index, ann)

    def _on_worker(self, fn: Callable[[], T]) -> T:
        return call_on_worker(self.worker, fn)

    def _save(self, library_id: str, state: LibraryState, index: AnnIndex, ann: object) -> None:
        rows, trained, calibration = call_on_worker(
            self.worker, lambda: (index.ann_rows, index.trained_rows, index.calibration)
        )
        if index.ann is not ann or not self._still_current(library_id, state):
            return  # superseded meanwhile: the next build saves
        self._unsaved.discard(library_id)
        meta = {**_expected(state), "trained_rows": trained}
        if calibration is not None:
            meta["calibration"] = calibration.as_dict()
        faiss_snapshots.save(ann, rows, meta, self.snapshot_path(library_id))

    def prefetch(self, record: LibraryRecord) -> None:
        """Read and check a library's ANN snapshot now, while the device worker is still loading the
        vectors from the store: a cold start then overlaps the two big reads."""
        if record.index_type in ("ivf", "hnsw"):
            self._records[record.id] = record
            self._submit("prefetch", record.id)

    def _prefetch(self, library_id: str) -> None:
        record = self._records.pop(library_id, None)
        path = self.snapshot_path(library_id)
        if record is None or not snapshot.exists(path):
            return
        try:
            self._prefetched[library_id] = faiss_snapshots.load(path, expected_meta_of(record))
        except snapshot.SnapshotError as exc:
            log.warning("library %s: discarding snapshot (%s); rebuilding from the store", library_id, exc)
            faiss_snapshots.remove_snapshot(path)

    def _load(self, library_id: str) -> None:
        found = self._ann_of(library_id)
        if found is None:
            self._prefetched.pop(library_id, None)
            return
        state, index = found
        path = self.snapshot_path(library_id)
        loaded = self._prefetched.pop(library_id, None)
        if loaded is None and snapshot.exists(path):
            try:
                loaded = faiss_snapshots.load(path, _expected(state))
            except snapshot.SnapshotError as exc:
                log.warning("library %s: discarding snapshot (%s); rebuilding from the store", library_id, exc)
                faiss_snapshots.remove_snapshot(path)
        if loaded is not None:
            ann, rows, meta = loaded
            if self._still_current(library_id, state):
                saved = Calibration.from_dict(meta.get("calibration"))
                trained = int(meta.get("trained_rows", 0))
                call_on_worker(self.worker, lambda: index.install(ann, rows, trained, saved))
                log.info("library %s: loaded its %s snapshot (%d rows)", library_id, index.index_type, len(rows))
                self._settle_light_graph(library_id, index)
                if saved is None:  # a snapshot saved without one: calibrate what was loaded
                    calibration = calibrated_build.calibrate_published(index, ann, self._on_worker, self._pace)
                    _log_calibration(library_id, calibration)
                    call_on_worker(self.worker, lambda: index.set_calibration(ann, calibration))
            return
        self._build(library_id)

    def _vectors(self, library_id: str) -> None:
        """The library's vector snapshot, which LibraryState asks for as it grows: one file to read at a
        restart instead of every row from SQLite (an ANN build writes one too, and may have meanwhile)."""
        state = self.libraries.get(library_id)
        if state is None or library_id in self._settling:
            return  # an import in chunks: written once it settles, not between its chunks
        flat = state.index.flat if isinstance(state.index, AnnIndex) else state.index

        def take() -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
            if state.vector_snapshot_due():
                return flat.rows_as_they_are()
            state.vector_snapshot_saved(state.snapshot_rows)  # a build wrote one meanwhile: nothing to ask
            return None

        taken = call_on_worker(self.worker, take)
        if taken is None or not len(taken[0]) or not self._still_current(library_id, state):
            return
        rows, alive, vectors = taken
        saved = snapshot.save_vectors(self.vectors_path(library_id), rows, vectors, _expected(state), alive)
        call_on_worker(self.worker, lambda: state.vector_snapshot_saved(saved))
        log.info("library %s: saved the vector snapshot of its %d rows", library_id, saved)

    def _forget(self, library_id: str) -> None:
        snapshot.remove(self.snapshot_path(library_id))
        snapshot.remove(self.vectors_path(library_id))


def expected_meta(state: LibraryState) -> dict[str, object]:
    """What a snapshot must have been made for to be used for this library."""
    return _expected(state)


def _expected(state: LibraryState) -> dict[str, object]:
    return expected_meta_of(state.record)


def expected_meta_of(r: LibraryRecord) -> dict[str, object]:
    """What a snapshot must have been made for to be used for the library of this record."""
    return {
        "library_id": r.id,
        "index_type": r.index_type,
        "metric": r.metric,
        "dimension": r.dimension,
        "index_params": r.index_params,
    }


BuildRequester = Callable[[str], None]


def _log_calibration(library_id: str, c: Calibration) -> None:
    log.info(
        "library %s: %s %d gives recall@10 %.4f on %d held-out rows (target %.3f%s) in %.2f s",
        library_id,
        c.parameter,
        c.value,
        c.measured_recall,
        c.sample_queries,
        c.target_recall,
        ", set by the user" if c.user_set else "",
        c.seconds,
    )
