"""A bulk import goes into the HNSW graph in chunks as its rows commit (``AnnIndex.is_import_chunk``,
``IndexBuilder``'s settle), with brute force as the oracle: deletes during the import never come back,
every live row is found, the exact side stays exact, and once the import is quiet every row is in a
calibrated graph, first the light one built during the import, then its upgrade."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from arrwdb.index import calibrated_build, snapshot
from arrwdb.index.ann import AnnIndex
from arrwdb.index.build_plan import LIGHT_GRAPH_MAX_AGE_S
from arrwdb.index.params import IMPORT_EF_CONSTRUCTION
from tests.property.test_ann import build_now, clustered, oracle, recall, record
from tests.property.test_one_copy import check_exact_side

WIDE = {"ef_search": 2048}  # a search effort wide enough that the graph finds what brute force finds


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return clustered(20_000, seed=31)


@pytest.fixture
def served(tmp_path):
    """(device worker, an L2 HNSW library's state, the real index builder over it), stopped after."""
    from arrwdb.engine.index_builder import IndexBuilder
    from arrwdb.library.library import LibraryState
    from arrwdb.runtime.device_worker import DeviceWorker

    worker = DeviceWorker()
    worker.start()
    state = LibraryState(record("hnsw", "l2", m=16), torch.device("cpu"))
    assert isinstance(state.index, AnnIndex)
    builder = IndexBuilder(worker, {"lib": state}, tmp_path)
    try:
        yield worker, state, builder
    finally:
        builder.stop()
        worker.stop()


class Import:
    """Rows of ``pool`` inserted in order (row id i holds pool[i - 1]), some deleted on the way."""

    def __init__(self, index: AnnIndex, pool: np.ndarray, seed: int) -> None:
        self.index, self.pool = index, pool
        self.rng = random.Random(seed)
        self.next_row = 1
        self.live: set[int] = set()
        self.deleted: set[int] = set()

    def add(self, count: int) -> None:
        rows = np.arange(self.next_row, self.next_row + count, dtype=np.int64)
        self.index.add(rows, self.pool[rows - 1])
        self.live.update(rows.tolist())
        self.next_row += count

    def delete(self, count: int) -> None:
        victims = sorted(self.rng.sample(sorted(self.live), min(count, len(self.live))))
        self.index.remove(np.asarray(victims, dtype=np.int64))
        self.live.difference_update(victims)
        self.deleted.update(victims)

    def live_rows(self) -> np.ndarray:
        return np.asarray(sorted(self.live), dtype=np.int64)


def check_against_brute_force(imp: Import, seed: int) -> None:
    index, live = imp.index, imp.live_rows()
    queries = clustered(100, seed=seed)
    _, found = index.search(queries, 10, None, WIDE)
    assert not set(found.reshape(-1).tolist()) & imp.deleted  # a deleted row never comes back
    assert ((found >= 0).sum(axis=1) == 10).all()
    _, truth = oracle(imp.pool[live - 1], live, "l2").search(queries, 10)
    assert recall(found, truth) >= 0.99
    check_exact_side(index, imp.pool, live, "l2", seed=seed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_import_chunks_with_deletes_during_the_import(pool, seed):
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, seed)
    imp.add(3000)
    assert build_now(index) == "build"
    assert index.calibrated_rows == 3000 and not index.calibration_stale()
    assert index.light_graph() and index.graph_ef_construction == IMPORT_EF_CONSTRUCTION  # built while importing
    chunks = calibrated = 0
    while imp.next_row + 1700 + 500 + 10 <= len(pool):
        imp.add(imp.rng.randint(1100, 1700))  # the rows committed while the previous chunk went in
        plan = index.plan()
        if plan is None:
            continue
        job = index.begin(plan)
        chunk = index.is_import_chunk(job)
        imp.add(imp.rng.randint(0, 500))  # rows that commit while this chunk goes in: they stay fresh
        imp.delete(imp.rng.randint(0, 150))  # deletes of graph rows, of this chunk's rows, of fresh rows
        ann, calibration = calibrated_build.build(index, job, lambda fn: fn(), calibrated=not chunk)
        assert (calibration is None) == chunk
        before = index.calibration
        index.finish(job, ann, 0.0, calibration, keep_calibration=chunk)
        if chunk:
            chunks += 1
            assert index.calibration is before and index.calibration_stale()
        else:
            calibrated += 1
            assert not index.calibration_stale()
        # The calibration in use was always measured on at least half the graph.
        assert 2 * index.calibrated_rows >= len(index.ann_rows)
        check_against_brute_force(imp, seed=100 * seed + chunks + calibrated)
    assert chunks >= 2 and calibrated >= 1  # both kinds ran (every row stays importing: no quiet second)
    # The import goes quiet with a few rows left fresh: the settle folds them in, and calibrates.
    while index.plan() is not None:
        build_now(index)
    imp.add(10)
    index.last_add_at = float("-inf")
    assert not index.importing() and 0 < index.fresh_count() < 2048
    assert index.plan() is None  # too few fresh rows for an extension of their own
    plan = index.plan(settle=True)
    assert plan == "extend"
    job = index.begin(plan)
    assert not index.is_import_chunk(job)  # quiet: calibrated
    ann, calibration = calibrated_build.build(index, job, lambda fn: fn())
    index.finish(job, ann, 0.0, calibration)
    assert index.fresh_count() == 0 and not index.calibration_stale()
    assert index.calibrated_rows == len(index.ann_rows)
    assert index.calibration.measured_recall >= index.calibration.aim
    check_against_brute_force(imp, seed=seed)
    # Queries unlike the stored rows (around other centres) get less from the light graph than the floor
    # below holds the upgraded graph to (ANN.md, "Bulk imports"), and not much less.
    queries = clustered(200, seed=seed + 50)
    live = imp.live_rows()
    _, truth = oracle(pool[live - 1], live, "l2").search(queries, 10)
    assert recall(index.search(queries, 10)[1], truth) >= 0.9
    # Every row is in the light graph, calibrated: it is rebuilt at the library's efConstruction, the
    # light graph serving until the new one is swapped in.
    assert index.light_graph() and index.plan() == "upgrade"
    job = index.begin("upgrade")
    assert job.kind == "build" and job.params == index.params and index.statistics()["upgrading"]
    imp.delete(20)  # deletes during the upgrade become its tombstones
    ann, calibration = calibrated_build.build(index, job, lambda fn: fn())
    index.finish(job, ann, 0.0, calibration)
    stats = index.statistics()
    assert not index.light_graph() and not stats["upgrading"] and index.plan() is None
    assert stats["graph_ef_construction"] == stats["ef_construction"] == 200
    check_against_brute_force(imp, seed=seed + 1)
    # The upgraded graph's calibration reached its aim on its held-out rows, and at that effort (no
    # ef_search named) unseen queries pass the floor test_ann.py holds every default search to.
    assert index.calibration.measured_recall >= index.calibration.aim
    queries = clustered(200, seed=seed + 50)
    live = imp.live_rows()
    _, found = index.search(queries, 10)
    _, truth = oracle(pool[live - 1], live, "l2").search(queries, 10)
    assert recall(found, truth) >= 0.95


def test_a_quiet_library_is_never_extended_uncalibrated(pool):
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, 5)
    imp.add(3000)
    build_now(index)
    imp.add(2500)
    index.last_add_at = time.monotonic() - 5  # the rows came a while ago
    job = index.begin(index.plan())
    assert job.kind == "extend" and not index.is_import_chunk(job)
    index.abort()


def test_a_graph_more_than_doubled_since_its_calibration_is_calibrated_again(pool):
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, 6)
    imp.add(2500)
    build_now(index)
    imp.add(2100)
    job = index.begin(index.plan())
    assert index.is_import_chunk(job)  # 4600 rows after it: calibrated on 2500, at least half
    index.abort()
    imp.add(500)
    job = index.begin(index.plan())
    assert not index.is_import_chunk(job)  # 5100 rows after it: more than twice 2500
    index.abort()


def test_the_builder_settles_an_import_into_a_calibrated_saved_graph(served, pool):
    """The real builder thread and device worker: rows committed in batches of 500 with deletes among
    them; once the import is quiet, every live row is in the graph, calibrated, and saved."""
    from arrwdb.runtime.device_worker import call_on_worker

    worker, state, builder = served
    index = state.index
    imp = Import(index, pool, 9)
    call_on_worker(worker, lambda: index.set_build_requester(lambda: builder.request_build("lib")))
    for step in range(24):
        call_on_worker(worker, lambda: imp.add(500))
        if step % 5 == 4:
            call_on_worker(worker, lambda: imp.delete(40))
        time.sleep(0.02)
    assert builder.wait_idle(timeout=120)
    stats = call_on_worker(worker, index.statistics)
    assert stats["fresh_rows"] == 0 and stats["ann_rows"] == stats["ntotal"] + stats["tombstones"]
    assert stats["calibrated_rows"] == stats["ann_rows"] and stats["calibration"] is not None
    assert stats["graph_ef_construction"] == stats["ef_construction"]  # the light graph was upgraded
    assert snapshot.exists(builder.snapshot_path("lib"))
    call_on_worker(worker, lambda: check_against_brute_force(imp, seed=77))


def test_a_graph_built_while_quiet_or_with_the_users_ef_construction_is_built_as_asked(pool):
    quiet = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    Import(quiet, pool, 13).add(3000)
    quiet.last_add_at = float("-inf")  # the rows came a while ago
    build_now(quiet)
    assert quiet.graph_ef_construction == 200 and not quiet.light_graph()
    named = AnnIndex(record("hnsw", "l2", m=16, ef_construction=40), torch.device("cpu"))
    Import(named, pool, 14).add(3000)
    build_now(named)  # while importing: the user's efConstruction all the same
    assert named.graph_ef_construction == 40 and not named.light_graph() and named.plan() is None


def test_a_light_graph_under_a_trickle_of_rows_is_upgraded_once_old(pool):
    """Rows that keep coming, fewer at a time than an extension takes, never leave the library quiet:
    the light graph is upgraded after LIGHT_GRAPH_MAX_AGE_S all the same."""
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, 15)
    imp.add(3000)
    build_now(index)
    imp.add(5)
    assert index.importing() and index.light_graph() and index.plan() is None
    index.light_since -= LIGHT_GRAPH_MAX_AGE_S
    assert index.plan() == "upgrade"


def test_an_old_light_graph_takes_the_imports_tail_before_its_upgrade(pool):
    """An import longer than LIGHT_GRAPH_MAX_AGE_S that ends with a tail too small for an extension: the
    settle folds the tail in (the rows are indexed at once), and only then is the graph upgraded."""
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, 17)
    imp.add(3000)
    build_now(index)
    imp.add(100)
    index.light_since -= 2 * LIGHT_GRAPH_MAX_AGE_S
    index.last_add_at = float("-inf")  # the import went quiet
    assert index.plan() is None and index.plan(settle=True) == "extend"
    job = index.begin("extend")
    ann, calibration = calibrated_build.build(index, job, lambda fn: fn())
    index.finish(job, ann, 0.0, calibration)
    assert index.fresh_count() == 0 and index.light_graph() and index.plan() == "upgrade"


def test_only_an_imports_graph_is_light(pool):
    """Rows loaded from the store are no import; and a graph rebuilt for its tombstones while rows come in
    is built at the library's efConstruction when the graph it replaces was."""
    from arrwdb.library.library import LibraryState

    state = LibraryState(record("hnsw", "l2", m=16), torch.device("cpu"))
    state.load(np.arange(1, 3001, dtype=np.int64), pool[:3000])
    assert not state.index.importing()
    index = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    imp = Import(index, pool, 18)
    imp.add(3000)
    index.last_add_at = float("-inf")
    build_now(index)
    assert not index.light_graph()
    imp.delete(700)  # past the tombstone share: a rebuild
    imp.add(10)  # rows coming in
    assert index.importing() and index.plan() == "build"
    build_now(index)
    assert index.graph_ef_construction == 200


def test_a_light_graph_loaded_from_a_snapshot_is_upgraded(served, pool, tmp_path):
    """A light graph saved before a restart is upgraded by the builder once the reloaded library is quiet."""
    from arrwdb.index import faiss_snapshots
    from arrwdb.runtime.device_worker import call_on_worker

    worker, state, builder = served
    index = state.index
    imp = Import(index, pool, 16)
    call_on_worker(worker, lambda: imp.add(3000))
    light = AnnIndex(record("hnsw", "l2", m=16), torch.device("cpu"))
    Import(light, pool, 16).add(3000)
    build_now(light)
    assert light.light_graph()
    meta = {**builder_meta(state), "trained_rows": 3000, "calibration": light.calibration.as_dict()}
    faiss_snapshots.save(light.ann, light.ann_rows, meta, builder.snapshot_path("lib"))
    call_on_worker(worker, lambda: index.set_build_requester(lambda: builder.request_build("lib")))
    builder.request_load("lib")
    assert builder.wait_idle(timeout=120)
    stats = call_on_worker(worker, index.statistics)
    assert stats["builds"] == 1 and stats["ann_rows"] == 3000  # the snapshot's graph, then its upgrade
    assert stats["graph_ef_construction"] == stats["ef_construction"] == 200


def builder_meta(state) -> dict[str, object]:
    from arrwdb.engine.index_builder import expected_meta

    return expected_meta(state)


def test_a_graph_recalibrated_on_its_own_rows_keeps_its_held_out_effort(served, pool):
    """An import whose last chunk took every row is calibrated on rows inside the graph, which overstate
    recall: the effort never drops below the one the last held-out calibration chose."""
    import dataclasses

    _, state, builder = served
    index = state.index
    imp = Import(index, pool, 12)
    imp.add(3000)
    build_now(index)
    assert index.calibration is not None
    index.calibration = dataclasses.replace(index.calibration, value=512)  # as if the held-out sample asked 512
    imp.add(2500)
    job = index.begin(index.plan())
    assert index.is_import_chunk(job)
    ann, _ = calibrated_build.build(index, job, lambda fn: fn(), calibrated=False)
    index.finish(job, ann, 0.0, None, keep_calibration=True)
    assert index.calibration_stale()
    builder._recalibrate_if_stale("lib", state, index)
    assert index.calibration is not None and index.calibrated_rows == len(index.ann_rows)
    assert index.calibration.value >= 512
    assert index.calibration.sample_value < 512  # the graph's own rows asked for less
