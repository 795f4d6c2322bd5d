"""Recall calibration (arrwdb.index.calibrate) against brute force as the oracle, in process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arrwdb.errors import InvalidInput
from arrwdb.index import calibrate, calibrated_build, faiss_ops, faiss_search
from arrwdb.index.ann import AnnIndex
from arrwdb.index.calibrate import Calibration
from arrwdb.index.params import INDEX_PARAM_RULES, check_params
from tests.property.test_ann import build_now, oracle, recall, record

DIM = 48


def uniform_sphere(n: int, seed: int) -> np.ndarray:
    """Gaussian directions: no clusters, the hard case for a graph or a list (the bench suite's data)."""
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return uniform_sphere(8000, seed=11)


def built(data: np.ndarray, index_type: str, metric: str = "cosine", **params: object) -> AnnIndex:
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    index = AnnIndex(record(index_type, metric, **params), torch.device("cpu"))
    index.add(ids, data)
    assert build_now(index) == "build"
    return index


def unseen_recall(index: AnnIndex, data: np.ndarray, metric: str = "cosine", seed: int = 12) -> float:
    """recall@10 of 300 new queries from the data's distribution, at the effort the index uses."""
    queries = uniform_sphere(300, seed)
    _, found = index.search(queries, 10)
    _, truth = oracle(data, np.arange(1, len(data) + 1, dtype=np.int64), metric).search(queries, 10)
    return recall(found, truth)


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
@pytest.mark.parametrize("target", [0.9, 0.99])
def test_calibration_reaches_the_target_on_unseen_queries(data, index_type, target):
    index = built(data, index_type, target_recall=target)
    stats = index.statistics()
    cal = stats["calibration"]
    assert cal["user_set"] is False and cal["target_recall"] == target
    assert cal["measured_recall"] >= cal["aim"] > target  # the sample's margin is on top of the target
    assert stats["ef_search" if index_type == "hnsw" else "nprobe"] == cal["value"]
    # Unseen queries: the target within the noise of 300 queries (3000 neighbours).
    assert unseen_recall(index, data) >= target - 0.015


def test_a_higher_target_costs_a_larger_effort(data):
    low = built(data, "hnsw", target_recall=0.8).statistics()
    high = built(data, "hnsw", target_recall=0.995).statistics()
    assert low["calibration"]["sample_value"] < high["calibration"]["sample_value"]
    assert low["ef_search"] <= high["ef_search"]


def test_the_effort_never_drops_below_the_default(data):
    """Easy data for its own rows still gets the default effort: queries from elsewhere need it."""
    cal = built(data, "hnsw", target_recall=0.5).statistics()["calibration"]
    assert cal["sample_value"] < 200 and cal["value"] == 200


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_self_matches_are_not_counted(data, index_type):
    """Rows searched INSIDE the index (a loaded snapshot's calibration): the measured recall is recall@10
    over each row's neighbours OTHER than itself, recomputed here from the index's own answers (11
    asked, the row dropped) against the oracle's (same rule)."""
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    effort = {"ef_search": 24} if index_type == "hnsw" else {"nprobe": 4}
    params = {**effort, "target_recall": 0.99}
    ann = faiss_ops.build(index_type, params, "cosine", ids, unit)
    sample = calibrate.sample_rows(ids)
    _, truth = oracle(data, ids, "cosine").search(unit[sample - 1], 11)
    cal = calibrate.calibrate(ann, index_type, "cosine", params, sample, unit[sample - 1], truth)
    key = next(iter(effort))
    _, found = faiss_search.search(
        ann, index_type, "cosine", unit[sample - 1], 11, selector=None, **{"ef_search": None, "nprobe": None, **effort}
    )
    assert (found[:, 0] == sample).mean() > 0.95  # a row finds itself first: it would inflate recall
    drop = calibrate.without_self
    assert cal.value == effort[key] and cal.user_set
    assert cal.measured_recall == pytest.approx(recall(drop(found, sample, 10), drop(truth, sample, 10)))
    assert recall(found[:, :10], truth[:, :10]) > cal.measured_recall  # counting itself would overstate


def test_held_out_rows_are_in_the_published_index(data):
    """Calibration's sample is held out of the build, then added: every row is in the index."""
    index = built(data, "hnsw")
    assert index.ann.ntotal == len(data) and index.statistics()["ann_rows"] == len(data)
    held = np.flatnonzero(calibrated_build.held_out(len(data))) + 1
    assert len(held) == calibrate.SAMPLE_QUERIES
    _, found = index.search(data[held - 1], 1)
    assert (found[:, 0] == held).mean() > 0.97


def test_a_snapshot_without_calibration_is_calibrated_with_its_rows_inside(data):
    index = built(data, "hnsw")
    ann = index.ann
    index.set_calibration(ann, None)  # as loaded from a snapshot saved without one
    cal = calibrated_build.calibrate_published(index, ann, lambda fn: fn())
    assert cal.measured_recall >= cal.aim and not cal.user_set


def test_without_self_drops_the_query_row_and_pads():
    ids = np.array([[7, 3, 5, -1], [1, 2, 3, 4]])
    assert calibrate.without_self(ids, np.array([7, 9]), 3).tolist() == [[3, 5, -1], [1, 2, 3]]


@pytest.mark.parametrize(("index_type", "key", "value"), [("hnsw", "ef_search", 20), ("ivf", "nprobe", 3)])
def test_an_effort_set_by_the_user_is_kept_and_measured(data, index_type, key, value):
    index = built(data, index_type, **{key: value})
    stats = index.statistics()
    cal = stats["calibration"]
    assert stats[key] == value and cal["value"] == value and cal["user_set"] is True
    assert cal["measured_recall"] < 0.99  # what that effort gives on this data, reported as measured
    # A query's own effort still overrides the library's.
    queries = uniform_sphere(50, seed=5)
    _, narrow = index.search(queries, 10)
    _, wide = index.search(queries, 10, None, {key: 4096 if key == "ef_search" else 10_000})
    _, truth = oracle(data, np.arange(1, len(data) + 1, dtype=np.int64), "cosine").search(queries, 10)
    assert recall(wide, truth) > recall(narrow, truth)


def test_extension_is_recalibrated(data):
    ids = np.arange(1, len(data) + 1, dtype=np.int64)
    index = AnnIndex(record("hnsw"), torch.device("cpu"))
    index.add(ids[:3000], data[:3000])
    build_now(index)
    first = index.calibration
    index.add(ids[3000:], data[3000:])
    assert build_now(index) == "extend"
    assert index.calibration is not first and index.calibration.sample_queries == calibrate.SAMPLE_QUERIES
    assert index.calibration.measured_recall >= index.calibration.aim
    assert unseen_recall(index, data) >= 0.975


def test_the_aim_adds_two_standard_errors():
    assert calibrate.aim_for(0.99, 256) == pytest.approx(0.99 + 2 * (0.99 * 0.01 / 2560) ** 0.5)
    assert calibrate.aim_for(1.0, 256) == 1.0


def test_smallest_reaching_finds_the_first_value_that_reaches_the_aim():
    ladder = [1, 2, 4, 8, 16, 32]
    asked: list[int] = []

    def recall_at(value: int) -> float:
        asked.append(value)
        return min(1.0, value / 10)

    assert calibrate.smallest_reaching(ladder, recall_at, 0.75) == (8, 0.8)
    assert len(asked) <= 4  # a binary search, not a scan
    assert calibrate.smallest_reaching(ladder, lambda v: 0.5, 0.9) == (32, 0.5)  # none does: the largest


def test_smallest_reaching_never_probes_far_above_the_answer():
    ladder = list(calibrate.EF_LADDER)
    for answer in range(len(ladder)):
        asked: list[int] = []

        def recall_at(value: int, answer: int = answer, asked: list[int] = asked) -> float:
            asked.append(value)
            return 1.0 if value >= ladder[answer] else 0.0

        assert calibrate.smallest_reaching(ladder, recall_at, 0.99) == (ladder[answer], 1.0)
        # Galloping: no probe beyond the index 2 * answer + 1 (efSearch 4096 only when needed)
        assert max(ladder.index(v) for v in asked) <= 2 * answer + 1
        assert len(asked) <= 2 * math.ceil(math.log2(answer + 2)) + 1


def test_nprobe_ladder_ends_at_an_exhaustive_scan():
    ladder = calibrate.nprobe_ladder(400)
    assert ladder[0] == 1 and ladder[-1] == 400 and ladder == sorted(set(ladder))


def test_calibration_round_trips_through_a_snapshot_meta():
    cal = Calibration("ef_search", 200, 96, 0.995, 0.99, 0.994, 256, False, 0.5)
    assert Calibration.from_dict(cal.as_dict()) == cal
    assert Calibration.from_dict({"value": 3}) is None and Calibration.from_dict(None) is None


@pytest.mark.parametrize("bad", [0.3, 1.2, True, "high"])
def test_target_recall_out_of_range_is_refused(bad):
    with pytest.raises(InvalidInput):
        check_params({"target_recall": bad}, INDEX_PARAM_RULES["hnsw"], "index_params for hnsw")
    assert check_params({"target_recall": 0.95}, INDEX_PARAM_RULES["ivf"], "x") == {"target_recall": 0.95}


def test_duplicated_rows_calibrate_at_a_low_effort_and_still_meet_the_target() -> None:
    """Every row stored twice: a query's K-th neighbour ties its duplicate, so by ids alone no effort
    reaches the aim (which of two equal rows the graph returns is arbitrary); counting ties, a modest
    efSearch does, and new queries get their neighbours (either copy) at it."""
    base = uniform_sphere(3000, seed=21)
    data = np.concatenate([base, base])
    index = built(data, "hnsw", m=16)
    calibration = index.calibration
    assert calibration is not None
    assert calibration.measured_recall >= calibration.aim
    assert calibration.sample_value < calibrate.EF_LADDER[-1]
    queries = uniform_sphere(300, seed=22)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    exact = queries @ unit.T
    order = np.argsort(-exact, axis=1)
    kth = exact[np.arange(len(queries)), order[:, 9]]
    _, found = index.search(queries, 10, None, None)
    rows = found - 1  # row ids start at 1
    good = exact[np.arange(len(queries))[:, None], rows] >= kth[:, None] - 1e-5
    assert good.mean() >= calibration.target_recall
