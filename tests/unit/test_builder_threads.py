"""Index builds in chunks, and the builder's FAISS threads follow the server's load: every core after a
quiet second (no search or embedding; the server passes ``Telemetry.searches_idle``, under which a bulk
import's commits leave the build every core), ARRWDB_BUILD_THREADS otherwise."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from arrwdb.engine.index_builder import IndexBuilder  # noqa: E402
from arrwdb.index import faiss_ops  # noqa: E402
from arrwdb.runtime.device_worker import DeviceWorker  # noqa: E402
from arrwdb.runtime.telemetry import Telemetry  # noqa: E402
from arrwdb.runtime.tuning import ADD_CHUNK  # noqa: E402

DIM = 16


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.random.default_rng(3).normal(size=(n, DIM)).astype(np.float32)
    return np.arange(1, n + 1, dtype=np.int64), vectors


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_a_build_is_paced_before_each_chunk_and_holds_every_vector(index_type: str) -> None:
    ids, vectors = _data(2 * ADD_CHUNK + 100)
    calls: list[int] = []
    index = faiss_ops.build(index_type, {}, "l2", ids, vectors, pace=lambda: calls.append(1))
    chunks = math.ceil(len(ids) / ADD_CHUNK)
    assert len(calls) == chunks + (1 if index_type == "ivf" else 0)  # IVF: its training too
    assert index.ntotal == len(ids)
    if index_type == "ivf":
        faiss.extract_index_ivf(index).nprobe = 64
    _, found = index.search(vectors[::97], 1)
    assert (found[:, 0] == ids[::97]).mean() >= 0.95  # each vector finds itself, whichever chunk it was in


def test_an_extension_is_paced_too() -> None:
    ids, vectors = _data(ADD_CHUNK + 100)  # the extension: one chunk and 50 more
    base = faiss_ops.build("hnsw", {}, "l2", ids[:50], vectors[:50])
    calls: list[int] = []
    grown = faiss_ops.extend(base, ids[50:], vectors[50:], pace=lambda: calls.append(1))
    assert len(calls) == 2 and grown.ntotal == len(ids) and base.ntotal == 50


def test_the_builder_takes_every_core_only_while_the_server_is_idle(tmp_path: Path) -> None:
    telemetry = Telemetry()
    worker = DeviceWorker()
    worker.start()
    builder = IndexBuilder(worker, {}, tmp_path, threads=1, serving_idle=telemetry.serving_idle, idle_threads=3)
    seen: list[int] = []

    def paced() -> None:
        builder._pace()
        seen.append(faiss.omp_get_max_threads())

    def as_the_builder_thread() -> None:  # FAISS threads are set per thread: one thread, as the builder's
        paced()  # no request ever: idle
        telemetry.request_started()  # a cheap request in flight (a statistics poll): still idle
        paced()
        telemetry.request_ended()
        telemetry.work_done()  # a search, embedding or commit just now: not yet a quiet second
        paced()
        telemetry.last_work_at -= 1.5  # as if a second and a half had passed
        paced()
        with telemetry.working():  # a batch running for longer than the quiet second
            telemetry.last_work_at -= 1.5
            paced()
        paced()  # it has just ended

    thread = threading.Thread(target=as_the_builder_thread)
    try:
        thread.start()
        thread.join(timeout=30)
    finally:
        builder.stop()
        worker.stop()
    assert builder.thread_choices == [3, 3, 1, 3, 1, 1]
    assert seen == [3, 3, 1, 3, 1, 1]


def test_commits_alone_leave_the_builder_every_core_searches_do_not() -> None:
    telemetry = Telemetry()
    assert telemetry.searches_idle() and telemetry.serving_idle()
    telemetry.work_done()  # a commit just now (the writer reports one this way)
    assert telemetry.searches_idle() and not telemetry.serving_idle()
    with telemetry.working():  # a search or embedding batch
        assert not telemetry.searches_idle()
    assert not telemetry.searches_idle()  # it has just ended: not yet a quiet second
    telemetry.last_search_at -= 1.5
    assert telemetry.searches_idle()


def test_idle_threads_default_to_the_usable_cores_and_follow_the_setting(tmp_path: Path) -> None:
    from arrwdb.config import Settings
    from arrwdb.runtime.cores import usable_cores

    worker = DeviceWorker()
    worker.start()
    try:
        default = IndexBuilder(worker, {}, tmp_path / "a", threads=1)
        capped = IndexBuilder(worker, {}, tmp_path / "b", threads=2, idle_threads=1)  # never below threads
        assert default.idle_threads == usable_cores() >= 1
        assert capped.idle_threads == 2
        default.stop()
        capped.stop()
    finally:
        worker.stop()
    assert Settings(build_threads_idle=3).build_threads_idle == 3
