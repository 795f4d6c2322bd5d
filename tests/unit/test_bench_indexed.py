"""`arrwdb bench indexed` and the peers run's named data sets, on tiny inputs: exact truth by the data
set's metric, when an import counts as indexed, issue 29's targets, the command-line options."""

from __future__ import annotations

import numpy as np

from arrwdb.bench import indexed
from arrwdb.bench.ann_data import AnnDataset
from arrwdb.bench.cli import build_parser
from arrwdb.bench.peers.report import issue29_targets


def test_exact_truth_by_l2_is_brute_force_by_l2():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 12)).astype(np.float32) * rng.uniform(0.1, 5, size=(600, 1)).astype(np.float32)
    queries = rng.normal(size=(30, 12)).astype(np.float32)
    truth = indexed.exact_truth(AnnDataset("x", base, queries, "l2"), k=5)
    distances = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(truth, np.argsort(distances, axis=1)[:, :5])


def point(t: float, state: str, ann: int, fresh: int, calibrated: int | None = None) -> dict:
    return {"t": t, "state": state, "ann_rows": ann, "fresh_rows": fresh, "builds": 1, "calibrated_rows": calibrated}


def test_indexed_means_every_row_in_a_graph_calibrated_as_it_is():
    timeline = [
        point(1.0, "building", 3000, 7000, 3000),
        point(2.0, "ann", 9000, 1000, 3000),  # folded (fewer fresh rows than an extension takes), not indexed
        point(3.0, "ann", 10_000, 0, 3000),  # every row in, the calibration older than the graph
        point(4.0, "ann", 10_000, 0, 10_000),
    ]
    assert indexed._first(timeline, 10_000, indexed._folded) == 2.0
    assert indexed._first(timeline, 10_000, indexed._indexed) == 4.0
    # A server that does not report calibrated_rows: every row in the graph is enough.
    legacy = [{**p, "calibrated_rows": None} for p in timeline]
    assert indexed._first(legacy, 10_000, indexed._indexed) == 3.0


def test_a_light_graph_being_upgraded_counts_as_indexed_and_the_full_graph_comes_after():
    def p(t: float, state: str, upgrading: bool, built: int) -> dict:
        return {**point(t, state, 10_000, 0, 10_000), "upgrading": upgrading, "graph_ef_construction": built}

    timeline = [
        {**p(1.0, "building", False, 100), "fresh_rows": 2000, "ann_rows": 8000, "calibrated_rows": 8000},
        p(2.0, "ann", False, 100),  # every row in the light graph, calibrated
        p(3.0, "building", True, 100),  # its upgrade runs; the light graph serves
        p(4.0, "ann", False, 200),
    ]
    for q in timeline:
        q["ef_construction"] = 200
    assert indexed._first(timeline, 10_000, indexed._indexed) == 2.0
    assert indexed._first(timeline[2:], 10_000, indexed._indexed) == 3.0
    assert indexed._first(timeline, 10_000, indexed._full_graph) == 4.0


def test_issue29_targets_need_the_recall_too():
    report = {
        "settings": {"k": 10, "clients": [1, 64]},
        "systems": {"arrwdb": {"hnsw": {"recall_at_10": 0.995}}},
        "ratios": {
            "insert_and_index_docs_per_s.arrwdb_over_chroma": 1.6,
            "search_qps@1.arrwdb_over_chroma": 1.2,
            "search_qps@64.arrwdb_over_chroma": 4.5,
        },
    }
    met = {t["target"].split(" >=")[0]: t["met"] for t in issue29_targets(report)}
    assert met == {
        "arrwdb recall@10": True,
        "inserted-and-indexed rate": True,
        "search q/s at 1 clients": False,
        "search q/s at 64 clients": True,
    }
    report["systems"]["arrwdb"]["hnsw"]["recall_at_10"] = 0.98
    assert not any(t["met"] for t in issue29_targets(report))


def test_the_command_line_takes_the_options():
    args = build_parser().parse_args(["indexed", "--datasets", "fashion-mnist", "--index-params", '{"m": 16}'])
    assert args.index_params == {"m": 16} and args.rows == 60_000 and args.batch == 1000
    args = build_parser().parse_args(["peers", "--dataset", "fashion-mnist", "--own-defaults"])
    assert args.dataset == "fashion-mnist" and args.own_defaults
    args = build_parser().parse_args(["peers"])
    assert args.dataset is None and not args.own_defaults
