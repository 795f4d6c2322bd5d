"""The index builder's next job (arrwdb.index.build_plan), as a pure function of an index's figures."""

from __future__ import annotations

from dataclasses import replace

from arrwdb.index.build_plan import LIGHT_GRAPH_MAX_AGE_S, IndexFigures, next_job

BUILT = IndexFigures(
    index_type="hnsw",
    live_rows=60_000,
    min_rows=2048,
    built=True,
    ann_rows=60_000,
    tombstones=0,
    trained_rows=60_000,
    fresh_rows=0,
    importing=False,
    calibration_stale=False,
    light_graph=False,
    light_age_s=0.0,
)


def test_a_first_build_waits_for_enough_rows():
    assert next_job(replace(BUILT, built=False, live_rows=2047, ann_rows=0)) is None
    assert next_job(replace(BUILT, built=False, live_rows=2048, ann_rows=0)) == "build"


def test_tombstones_and_ivf_growth_rebuild_and_fresh_rows_extend():
    assert next_job(BUILT) is None
    assert next_job(replace(BUILT, tombstones=12_001)) == "build"
    assert next_job(replace(BUILT, index_type="ivf", live_rows=240_000, trained_rows=60_000)) == "build"
    assert next_job(replace(BUILT, fresh_rows=2999)) is None  # under 5% of the index
    assert next_job(replace(BUILT, fresh_rows=3000)) == "extend"
    assert next_job(replace(BUILT, fresh_rows=1), settle=True) == "extend"  # the settle takes any row left


def test_a_light_graph_is_upgraded_once_settled_or_under_a_trickle_once_old():
    light = replace(BUILT, light_graph=True)
    assert next_job(light) == "upgrade"
    # not before the settle has folded the tail in and calibrated the graph: the import is indexed first
    assert next_job(replace(light, fresh_rows=10)) is None
    assert next_job(replace(light, fresh_rows=10), settle=True) == "extend"
    assert next_job(replace(light, calibration_stale=True)) is None
    # rows still coming: only once no light graph has been published for a while (a trickle)
    assert next_job(replace(light, importing=True, fresh_rows=10)) is None
    assert next_job(replace(light, importing=True, fresh_rows=10, light_age_s=LIGHT_GRAPH_MAX_AGE_S)) == "upgrade"
    # an extension due comes first, old light graph or not
    assert next_job(replace(light, importing=True, fresh_rows=5000, light_age_s=99.0)) == "extend"
