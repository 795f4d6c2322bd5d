"""The slow-query log line: logged only over the threshold, as one JSON object with the fields."""

from __future__ import annotations

import json
import logging

from arrwdb.library.inputs import SearchInput
from arrwdb.runtime.timings import Timings
from arrwdb.server.slowlog import log_slow_search


def queries() -> list[SearchInput]:
    return [
        SearchInput(query="a", embedding=None, k=5),
        SearchInput(query="b", embedding=None, k=20, filter_key='{"topic":"pets"}'),
    ]


def slow_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "arrwdb.slow"]


def test_a_search_under_the_threshold_is_not_logged(caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.slow")
    timings = Timings(1.0, 2.0, 3)
    log_slow_search(100, route="search", library="l", queries=queries(), timings=timings, total_ms=99.0)
    log_slow_search(0, route="search", library="l", queries=queries(), timings=timings, total_ms=1e6)  # 0 = off
    assert slow_records(caplog) == []


def test_a_slow_search_is_one_json_line_with_the_fields(caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.slow")
    timings = Timings(queue_ms=40.25, compute_ms=70.5, batch_size=17)
    log_slow_search(100, route="search_batch", library="news", queries=queries(), timings=timings, total_ms=123.4567)
    (record,) = slow_records(caplog)
    line = record.getMessage()
    assert "\n" not in line
    fields = json.loads(line)
    assert fields == {
        "event": "slow_query",
        "route": "search_batch",
        "library": "news",
        "queries": 2,
        "k": 20,
        "filter": '{"topic":"pets"}',
        "batch_size": 17,
        "queue_ms": 40.25,
        "compute_ms": 70.5,
        "total_ms": 123.457,
        "threshold_ms": 100,
    }
    assert record.slow_query == fields


def test_a_failed_slow_search_names_its_error(caplog):
    caplog.set_level(logging.INFO, logger="arrwdb.slow")
    only = [SearchInput(query="a", embedding=None)]
    log_slow_search(
        10, route="search", library="l", queries=only, timings=None, total_ms=500, error="deadline_exceeded"
    )
    fields = json.loads(slow_records(caplog)[0].getMessage())
    assert fields["error"] == "deadline_exceeded"
    assert fields["filter"] is None
    assert fields["batch_size"] is None and fields["compute_ms"] is None


def test_at_most_a_budget_of_lines_a_second_and_the_next_line_counts_the_rest(caplog, monkeypatch):
    from arrwdb.server import slowlog

    now = [100.0]
    monkeypatch.setattr(slowlog, "_budget", slowlog.LineBudget(5, clock=lambda: now[0]))
    caplog.set_level(logging.INFO, logger="arrwdb.slow")
    timings = Timings(1.0, 200.0, 3)
    for _ in range(12):  # an overloaded second: every search is slow
        log_slow_search(100, route="search", library="l", queries=queries(), timings=timings, total_ms=300)
    lines = [json.loads(r.getMessage()) for r in slow_records(caplog)]
    assert len(lines) == 5 and not any("suppressed" in line for line in lines)
    now[0] += 1.0
    log_slow_search(100, route="search", library="l", queries=queries(), timings=timings, total_ms=300)
    lines = [json.loads(r.getMessage()) for r in slow_records(caplog)]
    assert len(lines) == 6 and lines[-1]["suppressed"] == 7
