"""`arrwdb bench hnsw-defaults` on a small set: its curve, the sample's efSearch and its real queries."""

from __future__ import annotations

import numpy as np

from arrwdb.bench.ann_data import ground_truth
from arrwdb.bench.hnsw_defaults import EF_LADDER, out_of_distribution, run_graph
from arrwdb.index.calibrate import EF_LADDER as CALIBRATION_LADDER


def test_out_of_distribution_queries_lie_around_other_centres():
    data = out_of_distribution(2_000, 50, 48)
    assert data.base.shape == (2_000, 48) and data.queries.shape == (50, 48)
    assert np.allclose(np.linalg.norm(data.base, axis=1), 1.0, atol=1e-5)
    # A query's nearest row is farther than a row's nearest other row: no row looks like the queries.
    row_gap = 1.0 - np.sort(data.base[:50] @ data.base.T, axis=1)[:, -2]
    query_gap = 1.0 - (data.queries @ data.base.T).max(axis=1)
    assert np.median(query_gap) > 2 * np.median(row_gap)


def test_a_graph_run_reports_the_curve_of_the_real_queries_and_the_sample_effort():
    data = out_of_distribution(3_000, 100, 32)
    truth = ground_truth(data, 10)
    result = run_graph(data, truth, 16, 64)
    curve = result["curve"]
    assert [point["ef_search"] for point in curve] == list(EF_LADDER)
    recalls = [point["recall_at_10"] for point in curve]
    assert all(0.0 <= r <= 1.0 for r in recalls) and recalls[-1] >= recalls[0]
    assert result["sample_ef_search"] in CALIBRATION_LADDER
    needed = result["queries_ef_for_0.99"]
    assert needed is None or next(p["recall_at_10"] for p in curve if p["ef_search"] == needed) >= 0.99
    assert result["build_s"] > 0 and result["bytes_per_row"] > 32 * 4
