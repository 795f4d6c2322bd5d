"""`arrwdb bench engines` on tiny data: the figures it reports are there and consistent."""

from __future__ import annotations

import numpy as np

from arrwdb.bench import engines
from arrwdb.bench.ann_data import ground_truth


def test_an_engine_run_reports_build_bytes_and_a_recall_curve():
    data = engines.minilm_like(1500, 40)
    truth = ground_truth(data, engines.K)
    report = engines.run_engine(engines.FaissEngine, data, truth, m=16, ef_construction=64, seconds=0.02)
    assert report["engine"] == "faiss-hnsw-f32" and report["build_s"] > 0
    # A float32 graph holds at least the raw rows.
    assert report["bytes_per_row"] >= report["raw_bytes_per_row"] == 384 * 4
    recalls = [p["recall_at_10"] for p in report["curve"]]
    assert recalls[-1] >= 0.99 or len(recalls) == len(engines.EF_LADDER)  # stops once 0.99 is reached
    reached = report["at_recall"]["0.95"]
    assert reached is None or reached["recall_at_10"] >= 0.95
    assert all(p["qps_one_client"] > 0 and p["qps_batch_all_cores"] > 0 for p in report["curve"])


def test_rescored_engines_return_the_exact_order_of_their_candidates():
    engine = engines.UsearchEngine("i8")
    data = engines.minilm_like(800, 20)
    engine.build(data.base, data.metric, 16, 64)
    found = engine.search(data.queries, 10, 64, 1)
    scores = np.einsum("qkd,qd->qk", data.base[found], data.queries)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first, by exact float32 scores


def test_the_table_has_a_line_per_engine():
    point = {"ef_search": 16, "recall_at_10": 0.99, "qps_one_client": 1.0, "qps_batch_all_cores": 2.0}
    row = {"engine": "x", "build_s": 1.0, "bytes_per_row": 10.0, "at_recall": {"0.95": point, "0.99": None}}
    text = engines.format_engines({"results": {"d": [row, {**row, "engine": "y"}]}})
    assert text.count("\n  x ") == 1 and text.count("\n  y ") == 1
