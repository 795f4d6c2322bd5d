"""The slow-query log: one JSON line on logger ``arrwdb.slow`` per search slower than
``ARRWDB_SLOW_QUERY_MS`` (0 turns it off), at most ``LINES_PER_SECOND`` lines a second.

An overloaded server makes every search slow: one line each was 40,000 lines (9.5 MB) in a six-minute
benchmark, written by the event loop when it has the least time to spare.  Past the budget, lines are
counted instead, and the next line written carries ``suppressed``: how many were left out before it.

Structured so a log pipeline can chart it without parsing prose: the fields are also attached to the
record as ``record.slow_query`` for handlers that emit JSON themselves.  Only searches over the
threshold pay for building the line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from arrwdb.library.inputs import SearchInput
from arrwdb.runtime.timings import Timings

log = logging.getLogger("arrwdb.slow")

_MAX_FILTER_CHARS = 1000  # a huge $in list would otherwise make one log line megabytes long
LINES_PER_SECOND = 20


class LineBudget:
    """At most ``per_second`` lines in each one-second window; counts the lines refused meanwhile."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self._window_start = float("-inf")
        self._written = 0
        self._suppressed = 0

    def take(self) -> int | None:
        """None when this window's lines are spent; else how many lines were refused before this one."""
        now = self.clock()
        if now - self._window_start >= 1.0:
            self._window_start, self._written = now, 0
        if self._written >= self.per_second:
            self._suppressed += 1
            return None
        self._written += 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


_budget = LineBudget(LINES_PER_SECOND)


def log_slow_search(
    threshold_ms: float,
    *,
    route: str,
    library: str,
    queries: list[SearchInput],
    timings: Timings | None,
    total_ms: float,
    error: str | None = None,
) -> None:
    """Log the search if it took longer than ``threshold_ms``; ``timings`` is None when it failed.

    For a batch, ``k`` is the largest and ``filter`` the first query's; a search answered from the
    result cache reports batch size 0 and compute 0 (it never reached the device).
    """
    if threshold_ms <= 0 or total_ms <= threshold_ms:
        return
    suppressed = _budget.take()
    if suppressed is None:
        return
    filter_key = next((q.filter_key for q in queries if q.filter_key), "")
    fields: dict[str, Any] = {
        "event": "slow_query",
        "route": route,
        "library": library,
        "queries": len(queries),
        "k": max((q.k for q in queries), default=0),
        "filter": filter_key[:_MAX_FILTER_CHARS] or None,
        "batch_size": None if timings is None else timings.batch_size,
        "queue_ms": None if timings is None else round(timings.queue_ms, 3),
        "compute_ms": None if timings is None else round(timings.compute_ms, 3),
        "total_ms": round(total_ms, 3),
        "threshold_ms": threshold_ms,
    }
    if error is not None:
        fields["error"] = error
    if suppressed:
        fields["suppressed"] = suppressed
    log.warning(orjson.dumps(fields).decode(), extra={"slow_query": fields})
