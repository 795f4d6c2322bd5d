"""`arrwdb bench batching --rounds`: which round a point reports."""

from __future__ import annotations

import pytest

from arrwdb.bench.batching import run_batching
from arrwdb.bench.loadgen import median_round


def test_the_median_round_is_reported_with_every_rounds_figure() -> None:
    rounds = [{"qps": 900.0, "p99_ms": 80.0}, {"qps": 1100.0, "p99_ms": 70.0}, {"qps": 1000.0, "p99_ms": 90.0}]
    assert median_round(rounds, "qps") == {"qps": 1000.0, "p99_ms": 90.0, "rounds_qps": [900.0, 1100.0, 1000.0]}
    # An even count reports the lower middle round; one round is itself.
    assert median_round(rounds[:2], "qps")["qps"] == 900.0
    assert median_round([{"rejected_p99_ms": 2.5}], "rejected_p99_ms") == {
        "rejected_p99_ms": 2.5,
        "rounds_rejected_p99_ms": [2.5],
    }


def test_rounds_below_one_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="rounds"):
        run_batching(tmp_path / "b.json", tmp_path, rounds=0)
