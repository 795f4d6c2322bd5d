"""The retrieval benchmark's figures: nDCG@10 and recall@10 with one relevant document per query."""

from __future__ import annotations

import math

import pytest

from arrwdb.bench.retrieval import _ndcg_recall, format_retrieval


def test_ndcg_and_recall_at_10():
    ranked = [["a", "b"], ["x", "y", "c"], [str(i) for i in range(10)] + ["d"], []]
    ndcg, recall = _ndcg_recall(ranked, ["a", "c", "d", "e"])
    assert recall == pytest.approx(2 / 4)  # "d" is 11th: outside the top 10
    assert ndcg == pytest.approx((1.0 + 1.0 / math.log2(4)) / 4)


def test_report_table_names_every_mode_and_the_time_ratio():
    report = {
        "quality": {"bible-web": {"vector": {"ndcg@10": 0.5, "recall@10": 0.7}}},
        "speed": {"text queries": {"vector": _speed(100.0), "hybrid_rrf": _speed(80.0)}},
    }
    table = format_retrieval(report)
    assert "bible-web    vector         0.5000     0.7000" in table
    assert "1.25x" in table  # hybrid takes 1.25 times vector's time per query


def _speed(qps: float) -> dict:
    return {"qps": qps, "p50_ms": 1.0, "p99_ms": 2.0, "mean_batch_size": 3.0, "statuses": {"200": 1}}


def test_passages_hold_four_verses_and_never_cross_a_chapter():
    from arrwdb.bench.retrieval import _passages

    verses = {1001000 + v: f"a{v}" for v in range(1, 7)} | {1002001: "b1", 1002002: "b2"}
    passages, holder = _passages(verses, 10)
    assert passages == {"1001001": "a1 a2 a3 a4", "1001005": "a5 a6", "1002001": "b1 b2"}
    assert holder[1001006] == "1001005" and holder[1002002] == "1002001"
    assert list(_passages(verses, 2)[0]) == ["1001001", "1001005"]


def test_fusion_sweep_finds_the_setting_that_ranks_best():
    from arrwdb.bench.retrieval import _fusion_sweep
    from arrwdb.library.inputs import Hit

    def hits(*docs: str) -> list[Hit]:
        return [Hit(doc, 0, 1.0 - n / 10, None, None, {}) for n, doc in enumerate(docs)]

    # The keyword leg is right (its first hit), the vector leg ranks it third: only a keyword weight
    # above the vector's puts it first with RRF.
    legs = {"vector": [hits("x", "y", "a")], "keyword": [hits("a", "x", "y")]}
    sweep = _fusion_sweep(legs, ["a"])
    assert sweep["rrf"]["ndcg@10"] == 1.0 and sweep["rrf"]["weights"][1] > 1.0
    assert set(sweep) == {"rrf", "dbsf"}


def test_ceiling_counts_passages_that_hold_the_same_words():
    from arrwdb.bench.retrieval import _ceiling

    kjv = {1: "And he said,", 2: "Amen.", 5: "and HE said"}
    holder = {1: "p1", 2: "p1", 5: "p2"}
    assert _ceiling(kjv, holder, [2]) == pytest.approx(1.0)
    assert _ceiling(kjv, holder, [1]) == pytest.approx((1.0 + 1.0 / math.log2(3)) / 2)


def test_grouped_quality_ranks_the_groups_keys():
    import httpx
    import orjson

    from arrwdb.bench.retrieval import MODES, _quality

    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        queries = orjson.loads(request.content)["queries"]
        seen.extend(query.get("group_by") for query in queries)
        groups = [{"key": "p2", "hits": []}, {"key": "p1", "hits": []}]
        return httpx.Response(200, json={"results": [groups for _ in queries], "took_ms": 1.0})

    with httpx.Client(base_url="http://test", transport=httpx.MockTransport(answer)) as http:
        out = _quality(http, ["a verse"], ["p1"], "kjv-verses", "passage")
    assert set(out) == set(MODES) and seen == ["passage"] * len(MODES)
    assert out["vector"] == {"ndcg@10": round(1.0 / math.log2(3), 4), "recall@10": 1.0}  # p1 is 2nd


def test_the_table_shows_the_cores_the_server_used_and_the_idle_ones():
    report = {
        "quality": {},
        "speed": {"embedding + keywords": {"vector": {**_speed(100.0), "server_cores": 1.25, "idle_cores": 0.5}}},
    }
    line = format_retrieval(report).splitlines()[-1]
    assert line.split()[-2:] == ["1.25", "0.50"]


def test_speed_rounds_below_one_are_refused(tmp_path):
    from arrwdb.bench.retrieval import run_retrieval

    with pytest.raises(ValueError, match="rounds"):
        run_retrieval(tmp_path / "r.json", tmp_path, rounds=0)
